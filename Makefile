# make test   fmt check, clippy and all tests (throwaway MariaDB; scripts/test.sh);
#             on Oracle MySQL (Debian sid's, fetched into target/mysql-sid): make test FLAVOR=mysql
#             extra cargo test args: make test ARGS="-- --nocapture"
# make demo   the daemon against a throwaway MariaDB and three demo processes
# make build  release build: target/release/monitor_service
# make rpm    RPM package in target/packages/ (rpmbuild; installs rpm with apt-get when missing)
# make deb    Debian package in target/packages/ (installs cargo-deb when missing)
# make packages  both; make check-packages  both, then check, install (throwaway roots) and lint them
#             (target/ is $CARGO_TARGET_DIR when set; README.md, Packages)
.PHONY: test demo build fmt clippy rpm deb packages check-packages

FLAVOR ?= $(or $(MONITOR_TESTDB_FLAVOR),mariadb)

test:
	MONITOR_TESTDB_FLAVOR=$(FLAVOR) scripts/test.sh $(ARGS)

demo:
	scripts/demo.sh

build:
	cargo build --release

fmt:
	cargo fmt --all

clippy:
	cargo clippy --all-targets -- -D warnings

rpm:
	scripts/package.sh rpm

deb:
	scripts/package.sh deb

packages:
	scripts/package.sh all

check-packages:
	scripts/check-packages.sh
