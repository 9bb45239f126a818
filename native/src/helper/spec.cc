#include "spec.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace spec {
namespace {

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

}  // namespace

bool parse(const std::string& buf, std::vector<Op>* out, std::string* error) {
  size_t pos = 0;
  while (pos < buf.size()) {
    Op op;
    std::string argc_s;
    if (!next_field(buf, &pos, &op.step, error) || !next_field(buf, &pos, &op.name, error) ||
        !next_field(buf, &pos, &argc_s, error)) {
      return false;
    }
    char* end = nullptr;
    long argc = strtol(argc_s.c_str(), &end, 10);
    if (*end != '\0' || argc < 0 || argc > 64) {
      *error = "bad argc for op " + op.name;
      return false;
    }
    for (long i = 0; i < argc; ++i) {
      std::string a;
      if (!next_field(buf, &pos, &a, error)) return false;
      op.args.push_back(a);
    }
    out->push_back(op);
  }
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
