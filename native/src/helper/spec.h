// The op list TypeScript sends to `underlay-nsexec create` on stdin.
//
// Wire format: a sequence of netstrings ("<len>:<bytes>,"). Each op is
//   step, name, argc, arg0 ... arg(argc-1)
// parse() checks the whole list against the op table (ops.h) before anything
// runs: every name known, every argc right, every op in a stage that may run
// it, the four boundary ops present and in order, flag names known. Policy -
// which ops, in which order, with which values - is decided in
// server/sandbox/steps.ts, never here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ops.h"

namespace spec {

struct Op {
  size_t index = 0;  // position in the list, named in error records
  std::string step;  // named sandbox step (docs/sandbox.md#step-names), e.g. "pivot-root"
  std::string name;  // op name, e.g. "mount"
  ops::Kind kind = ops::Kind::kMount;
  ops::Stage stage = ops::kPreClone;  // where it runs; a boundary op: the stage it ends
  std::vector<std::string> args;      // exactly the table's argc
  unsigned long mount_flags = 0;      // mount: args[3] resolved
  int clone_flags = 0;                // unshare: args[0] resolved
};

// A checked op list. The boundary ops' indexes split it into the stages:
// [0, clone_userns) host before the clone, (clone_userns, release_child)
// host, (release_child, fork_init) child, (fork_init, init_loop) init.
struct Spec {
  std::vector<Op> ops;
  size_t clone_userns = 0;
  size_t release_child = 0;
  size_t fork_init = 0;
  size_t init_loop = 0;
  // start-child (host) and await-host (child): both or neither, at most one
  // each, await-host before any await-attach. Whether the list has them.
  bool starts_child_early = false;
};

// Parses and checks the whole buffer. On any problem returns false and sets
// `error` to a detail naming the op, its index and its step; nothing has been
// started at that point.
bool parse(const std::string& buf, Spec* out, std::string* error);

// Reads fd to EOF.
bool read_all(int fd, std::string* out);

}  // namespace spec
