// Console sockets: how a terminal's pty master, opened by the join helper
// inside a sandbox, reaches the server (runc's --console-socket pattern):
// over a socketpair, as SCM_RIGHTS, so the server reads and writes the
// sandbox's own pty directly, with no relay process in between.
#pragma once

#include <napi.h>

namespace console {
void Register(Napi::Env env, Napi::Object exports);
}
