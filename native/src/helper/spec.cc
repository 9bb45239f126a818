#include "spec.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "flags.h"

namespace spec {
namespace {

// Past init-loop: nothing may run there.
constexpr unsigned kDone = ops::kInit << 1;

bool next_field(const std::string& buf, size_t* pos, std::string* field, std::string* error) {
  size_t colon = buf.find(':', *pos);
  if (colon == std::string::npos || colon == *pos || colon - *pos > 9) {
    *error = "expected <len>: at byte " + std::to_string(*pos);
    return false;
  }
  size_t len = 0;
  for (size_t i = *pos; i < colon; ++i) {
    if (buf[i] < '0' || buf[i] > '9') {
      *error = "bad length at byte " + std::to_string(i);
      return false;
    }
    len = len * 10 + static_cast<size_t>(buf[i] - '0');
  }
  size_t start = colon + 1;
  if (start + len >= buf.size() || buf[start + len] != ',') {
    *error = "field at byte " + std::to_string(*pos) + " overruns the buffer or lacks ','";
    return false;
  }
  field->assign(buf, start, len);
  *pos = start + len + 1;
  return true;
}

bool fail(std::string* error, const std::string& detail) {
  *error = "spec: " + detail;
  return false;
}

// "spec: ops[7] 'mount' (step rootfs): needs 5 args, got 4"
bool op_fail(std::string* error, const Op& op, const std::string& why) {
  return fail(error, "ops[" + std::to_string(op.index) + "] '" + op.name + "' (step " + op.step +
                         "): " + why);
}

}  // namespace

bool parse(const std::string& buf, Spec* out, std::string* error) {
  unsigned stage = ops::kPreClone;
  int start_child = 0, await_host = 0, await_attach = 0;
  size_t pos = 0;
  std::string why;
  for (size_t index = 0; pos < buf.size(); ++index) {
    Op op;
    op.index = index;
    std::string argc_s;
    if (!next_field(buf, &pos, &op.step, &why) || !next_field(buf, &pos, &op.name, &why) ||
        !next_field(buf, &pos, &argc_s, &why)) {
      return fail(error, "ops[" + std::to_string(index) + "]: " + why);
    }
    const ops::Def* def = ops::find(op.name);
    if (!def) return op_fail(error, op, "unknown op");
    char* end = nullptr;
    long argc = strtol(argc_s.c_str(), &end, 10);
    if (argc_s.empty() || *end != '\0' || argc < 0 || argc > 64)
      return op_fail(error, op, "bad argc '" + argc_s + "'");
    if (static_cast<unsigned long>(argc) != def->argc) {
      return op_fail(error, op,
                     "needs " + std::to_string(def->argc) + " args, got " + std::to_string(argc));
    }
    for (long i = 0; i < argc; ++i) {
      std::string a;
      if (!next_field(buf, &pos, &a, &why)) return op_fail(error, op, why);
      op.args.push_back(a);
    }
    if (stage == kDone) return op_fail(error, op, "follows init-loop, which never returns");
    if (!(def->stages & stage)) {
      return op_fail(error, op,
                     std::string("not allowed in the ") + ops::stage_name(stage) +
                         " stage (allowed: " + ops::stage_names(def->stages) + ")");
    }
    if (def->kind == ops::Kind::kMount && !flags::parse_mount(op.args[3], &op.mount_flags))
      return op_fail(error, op, "unknown mount flag in '" + op.args[3] + "'");
    if (def->kind == ops::Kind::kUnshare && !flags::parse_clone(op.args[0], &op.clone_flags))
      return op_fail(error, op, "unknown clone flag in '" + op.args[0] + "'");
    op.kind = def->kind;
    op.stage = static_cast<ops::Stage>(stage);
    // The go pipe carries one byte per release: start-child's, release-child's,
    // then the attach. Each waiting op must have its byte, in this order.
    if (def->kind == ops::Kind::kStartChild && ++start_child > 1)
      return op_fail(error, op, "start-child may appear once");
    if (def->kind == ops::Kind::kAwaitHost && ++await_host > 1)
      return op_fail(error, op, "await-host may appear once");
    if (def->kind == ops::Kind::kAwaitHost && await_attach > 0)
      return op_fail(error, op, "await-host must come before await-attach");
    if (def->kind == ops::Kind::kAwaitAttach) ++await_attach;
    if (def->boundary) {
      switch (def->kind) {
        case ops::Kind::kCloneUserns:
          out->clone_userns = index;
          break;
        case ops::Kind::kReleaseChild:
          out->release_child = index;
          break;
        case ops::Kind::kForkInit:
          out->fork_init = index;
          break;
        case ops::Kind::kInitLoop:
          out->init_loop = index;
          break;
        default:
          break;
      }
      stage <<= 1;  // the next stage begins
    }
    out->ops.push_back(op);
  }
  if (stage != kDone) {
    return fail(error, std::string("the list ends in the ") + ops::stage_name(stage) +
                           " stage: no " + ops::boundary_ending(stage) + " op");
  }
  if (start_child != await_host)
    return fail(error, start_child ? "start-child without an await-host in the child stage"
                                   : "await-host without a start-child in the host stage");
  out->starts_child_early = start_child > 0;
  return true;
}

bool read_all(int fd, std::string* out) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (1u << 20)) return false;  // a spec is a few KiB; refuse junk
  }
}

}  // namespace spec
