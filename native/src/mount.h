// mount(2) / umount2(2) on the host mount namespace: the per-session disk
// (an ext4 image on a loop device) and teardown. Flags arrive as names ("MS_BIND|MS_REC").
#pragma once

#include <napi.h>

namespace mounts {
void Register(Napi::Env env, Napi::Object exports);
}
