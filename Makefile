# make test   fmt check, clippy and all tests (throwaway MariaDB; scripts/test.sh);
#             extra cargo test args: make test ARGS="-- --nocapture"
# make demo   the daemon against a throwaway MariaDB and three demo processes
# make build  release build: target/release/monitor_service
.PHONY: test demo build fmt clippy

test:
	scripts/test.sh $(ARGS)

demo:
	scripts/demo.sh

build:
	cargo build --release

fmt:
	cargo fmt --all

clippy:
	cargo clippy --all-targets -- -D warnings
