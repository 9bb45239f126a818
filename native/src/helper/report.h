// Failure records. Every stage of the helper (the host side, the user-namespace
// child and the sandbox init) reports a failure as ONE line on a shared pipe:
//   ERR \t step \t syscall \t errno \t path \t detail \n
// Lines are shorter than PIPE_BUF, so writes from several processes never
// interleave. Two readers turn it into error props ({code, errno, syscall,
// path, step, detail}): errors::ParseRecord in the addon for `create`, and
// parseErrRecord in native/index.ts for `join`. `step` is always one of
// StepName there. Nothing here prints to a terminal: the helper returns data,
// the server decides what to show.
#pragma once

#include <cerrno>

namespace report {

// The fd failures go to. Set once per process stage before any op runs.
void set_fd(int fd);

// Writes the record and returns. `err` is an errno value (0 for non-syscall
// failures such as a malformed spec, which use `detail` instead).
void failure(const char* step, const char* syscall_name, int err, const char* path,
             const char* detail);

// Writes the record and _exit(125). 125 follows docker's convention: the
// runtime failed, not the user's command.
[[noreturn]] void die(const char* step, const char* syscall_name, int err, const char* path,
                      const char* detail = "");

// A plain line ("PID 123", "OK 123") on the same fd.
void line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace report
