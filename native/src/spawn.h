// createSandbox: hand an op list to a fresh underlay-nsexec and wait for the
// sandbox init's pid, off the JS thread (a napi AsyncWorker).
#pragma once

#include <napi.h>

namespace spawn {
void Register(Napi::Env env, Napi::Object exports);
}
