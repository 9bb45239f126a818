// Symbolic names <-> numbers for mount(2) and clone(2)/unshare(2) flags.
// TypeScript sends names ("MS_BIND|MS_REC") so specs and error messages stay
// readable (runc's stringifyMountFlags does the same for its errors).
#pragma once

#include <string>

namespace flags {

// Parses "MS_BIND|MS_REC" (or "" for 0). Returns false on an unknown name.
bool parse_mount(const std::string& names, unsigned long* out);

// Parses "CLONE_NEWNS|CLONE_NEWPID" (or "" for 0).
bool parse_clone(const std::string& names, int* out);

}  // namespace flags
