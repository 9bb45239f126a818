// Errors that cross into JavaScript carry Node's errno shape plus the named
// sandbox step: {code: 'EPERM', errno: 1, syscall: 'mount', path, step}.
// The class is injected from TypeScript (better-sqlite3's initialize()
// pattern) so `instanceof SandboxError` holds on the JS side.
#pragma once

#include <napi.h>

#include <string>

namespace errors {

void SetErrorClass(Napi::Function cls);

struct Record {
  std::string step;
  std::string syscall;
  int err = 0;
  std::string path;
  std::string detail;
};

// Builds a SandboxError (or a plain Error before initialize()).
Napi::Error Make(Napi::Env env, const Record& r);

// Throws Make(...) as a JS exception.
void Throw(Napi::Env env, const Record& r);

// Parses "ERR\tstep\tsyscall\terrno\tpath\tdetail" from the helper.
bool ParseRecord(const std::string& line, Record* out);

}  // namespace errors
