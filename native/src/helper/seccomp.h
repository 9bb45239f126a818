#pragma once

// The deny-list seccomp filter (seccomp.cc). Installed by `join` in every
// process it starts and by the sandbox init itself (op `seccomp`), so no
// process in a sandbox runs unfiltered. `step` names the failure.
namespace seccomp {
void install(const char* step);
}
