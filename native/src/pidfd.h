// pidfds: race-free handles on the sandbox init and on helpers. A pid number
// can be recycled; a pidfd cannot, so signals and liveness checks go through
// one (kernel >= 5.3 for pidfd_open, 5.1 for pidfd_send_signal).
#pragma once

#include <napi.h>

namespace pidfd {
void Register(Napi::Env env, Napi::Object exports);
}
