// The closed op vocabulary of `underlay-nsexec create`: ONE table, in the
// spirit of bubblewrap's PRIV_SEP_OP_* list. spec::parse resolves every op
// name through it and checks argc and stage before the helper forks anything;
// create.cc then dispatches on Kind only. Adding an op means a Kind here, a
// row in ops.cc, a case in create.cc, and the `Op` union + `opArgs` in
// native/index.ts.
#pragma once

#include <string>

namespace ops {

enum class Kind {
  kCloneIntoCgroup,
  kCloneUserns,
  kWriteChildProc,
  kIdmapMount,
  kAttachChild,
  kStartChild,
  kReleaseChild,
  kSetids,
  kUnshare,
  kNestUserns,
  kAwaitHost,
  kAwaitAttach,
  kInitIntoCgroup,
  kAwaitScratch,
  kForkInit,
  kMount,
  kMkdir,
  kTouch,
  kSymlink,
  kWrite,
  kChown,
  kMask,
  kBindRo,
  kPivotRoot,
  kSethostname,
  kLoopbackUp,
  kSetDumpable,
  kSeccomp,
  kInitLoop,
};

// The process an op runs in. The stage follows from the op's position: the
// four boundary ops each end one stage, in this order:
//
//   kPreClone  host, before clone-userns: no child exists yet
//   kHost      host, from clone-userns to release-child: the child exists
//              and waits, unshared from the user namespace only
//   kChild     user-namespace child, from release-child to fork-init
//   kInit      sandbox init (pid 1), from fork-init to init-loop
//
// Nothing may follow init-loop: init never returns from it. The bits are in
// stage order, so the parser moves on with `stage <<= 1` at each boundary.
enum Stage : unsigned {
  kPreClone = 1u << 0,
  kHost = 1u << 1,
  kChild = 1u << 2,
  kInit = 1u << 3,
};

struct Def {
  const char* name;  // the wire name, as in native/index.ts
  Kind kind;
  unsigned argc;
  unsigned stages;  // Stage bits the op may run in; for a boundary op, the stage it ends
  bool boundary;    // clone-userns, release-child, fork-init, init-loop
};

// The row for `name`, or nullptr for an op outside the vocabulary.
const Def* find(const std::string& name);

// The boundary op that ends `stage` ("release-child" for kHost).
const char* boundary_ending(unsigned stage);

// "pre-clone host", "host", ... for error records.
const char* stage_name(unsigned stage);

// Every stage in `stages`, comma-separated.
std::string stage_names(unsigned stages);

}  // namespace ops
