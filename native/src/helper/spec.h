// The op list TypeScript sends to `underlay-nsexec create` on stdin.
//
// Wire format: a sequence of netstrings ("<len>:<bytes>,"). Each op is
//   step, name, argc, arg0 ... arg(argc-1)
// The vocabulary is closed (see ops.cc); policy - which ops, in which order,
// with which values - is decided in server/sandbox/steps.ts, never here.
#pragma once

#include <string>
#include <vector>

namespace spec {

struct Op {
  std::string step;  // named step from ARCHITECTURE.md, e.g. "pivot-root"
  std::string name;  // op name, e.g. "mount"
  std::vector<std::string> args;
};

// Parses the whole buffer. On malformed input returns false and sets `error`.
bool parse(const std::string& buf, std::vector<Op>* out, std::string* error);

// Reads fd to EOF.
bool read_all(int fd, std::string* out);

}  // namespace spec
