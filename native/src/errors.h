// Errors that cross into JavaScript carry Node's errno shape plus the named
// sandbox step: {code: 'EPERM', errno: 1, syscall: 'mount', path, step,
// detail}. C++ only gathers those fields; the factory TypeScript injects with
// initialize() (better-sqlite3's pattern) turns them into the error object and
// writes its message, so `instanceof SandboxError` holds and the wording lives
// in one place on the JS side.
#pragma once

#include <napi.h>

#include <string>

namespace errors {

// initialize(factory): factory(props) -> Error, called for every failure.
void SetFactory(Napi::Function factory);

struct Record {
  std::string step;  // one of StepName in native/index.ts
  std::string syscall;
  int err = 0;
  std::string path;
  std::string detail;
};

// The error value for `r`: factory(props), or, before initialize(), a plain
// Error carrying the props with only the errno name as its message. Never
// leaves a JS exception pending: if the factory throws, that is the value.
Napi::Value Make(Napi::Env env, const Record& r);

// Throws Make(...) as a JS exception.
void Throw(Napi::Env env, const Record& r);

// Parses the helper's "ERR\tstep\tsyscall\terrno\tpath\tdetail" (report.h).
// parseErrRecord in native/index.ts reads the same record for `join`.
bool ParseRecord(const std::string& line, Record* out);

}  // namespace errors
