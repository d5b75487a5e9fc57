-- monitor_service %pretrans (Lua: runs before rpm looks at the files on
-- disk, and needs no shell). A host switching over from the bash service
-- (or from a package before 0.1.0-2) keeps its config.ini in
-- /opt/monitor_service. Copy it to /etc/monitor_service, mode 600, before the
-- package's files land: the daemon reads the /etc file first, so it keeps
-- its settings, and rpm writes the packaged default next to it as
-- config.ini.rpmnew. The /opt file stays. Any failure leaves things as they
-- were and the daemon falls back to reading the /opt file.
local old = "/opt/monitor_service/config.ini"
local dir = "/etc/monitor_service"
local new = dir .. "/config.ini"
if posix.stat(old, "type") ~= "regular" or posix.stat(new) or posix.readlink(new) then
    return
end
local src = io.open(old, "rb")
if not src then
    return
end
local text = src:read("*a")
src:close()
-- Made private first: the password is never readable by others, even for
-- a moment.
if not posix.stat(dir) then
    posix.mkdir(dir)
end
posix.chmod(dir, "0700")
local dst = io.open(new, "wb")
if dst then
    dst:write(text)
    dst:close()
    posix.chmod(new, "0600")
end
posix.chmod(dir, "0755")
