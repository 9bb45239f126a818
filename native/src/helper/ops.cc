#include "ops.h"

namespace ops {
namespace {

constexpr unsigned kHostSide = kPreClone | kHost;
constexpr unsigned kSandboxSide = kChild | kInit;
constexpr unsigned kAnywhere = kHostSide | kSandboxSide;

// The stages follow from what each process holds: only the host sees the
// child from outside (its /proc files, its user namespace, the host cgroup
// tree); only the child holds the new user namespace's credentials to
// setresuid and unshare the rest; only init lives in the new pid and mount
// namespaces where the root is built. touch and symlink were never needed
// on the host, so they stay off it. A boundary op's `stages` is the one
// stage it ends.
// clang-format off
const Def kOps[] = {
    // name              kind                    argc  stages        boundary
    {"clone-into-cgroup", Kind::kCloneIntoCgroup, 1,   kPreClone,    false},
    {"clone-userns",     Kind::kCloneUserns,     2,    kPreClone,    true},
    {"write-child-proc", Kind::kWriteChildProc,  2,    kHost,        false},
    {"idmap-mount",      Kind::kIdmapMount,      2,    kHost,        false},
    {"attach-child",     Kind::kAttachChild,     1,    kHost,        false},
    {"await-scratch",    Kind::kAwaitScratch,    0,    kHost,        false},
    {"start-child",      Kind::kStartChild,      0,    kHost,        false},
    {"release-child",    Kind::kReleaseChild,    0,    kHost,        true},
    {"setids",           Kind::kSetids,          2,    kChild,       false},
    {"unshare",          Kind::kUnshare,         1,    kChild,       false},
    {"nest-userns",      Kind::kNestUserns,      1,    kChild,       false},
    {"await-host",       Kind::kAwaitHost,       0,    kChild,       false},
    {"await-attach",     Kind::kAwaitAttach,     0,    kChild,       false},
    {"init-into-cgroup", Kind::kInitIntoCgroup,  1,    kChild,       false},
    {"fork-init",        Kind::kForkInit,        0,    kChild,       true},
    {"mount",            Kind::kMount,           5,    kAnywhere,    false},
    {"mkdir",            Kind::kMkdir,           2,    kAnywhere,    false},
    {"touch",            Kind::kTouch,           1,    kSandboxSide, false},
    {"symlink",          Kind::kSymlink,         2,    kSandboxSide, false},
    {"write",            Kind::kWrite,           2,    kAnywhere,    false},
    {"chown",            Kind::kChown,           3,    kAnywhere,    false},
    {"mask",             Kind::kMask,            1,    kInit,        false},
    {"bind-ro",          Kind::kBindRo,          1,    kInit,        false},
    {"pivot-root",       Kind::kPivotRoot,       1,    kInit,        false},
    {"sethostname",      Kind::kSethostname,     1,    kInit,        false},
    {"loopback-up",      Kind::kLoopbackUp,      0,    kInit,        false},
    {"set-dumpable",     Kind::kSetDumpable,     1,    kInit,        false},
    {"seccomp",          Kind::kSeccomp,         0,    kInit,        false},
    {"init-loop",        Kind::kInitLoop,        0,    kInit,        true},
};
// clang-format on

const struct {
  Stage stage;
  const char* name;
} kStageNames[] = {
    {kPreClone, "pre-clone host"},
    {kHost, "host"},
    {kChild, "user-namespace child"},
    {kInit, "sandbox init"},
};

}  // namespace

const Def* find(const std::string& name) {
  for (const Def& d : kOps) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const char* boundary_ending(unsigned stage) {
  for (const Def& d : kOps) {
    if (d.boundary && d.stages == stage) return d.name;
  }
  return "?";
}

const char* stage_name(unsigned stage) {
  for (const auto& s : kStageNames) {
    if (stage == s.stage) return s.name;
  }
  return "after init-loop";
}

std::string stage_names(unsigned stages) {
  std::string out;
  for (const auto& s : kStageNames) {
    if (!(stages & s.stage)) continue;
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out;
}

}  // namespace ops
