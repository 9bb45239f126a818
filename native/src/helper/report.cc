#include "report.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace report {
namespace {
int g_fd = 2;

// Tabs and newlines would break the record framing; paths with them are
// exotic enough that replacing them is the honest trade-off.
void sanitize(char* s) {
  for (; *s; ++s) {
    if (*s == '\t' || *s == '\n') *s = ' ';
  }
}

void write_all(const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(g_fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf += n;
    len -= static_cast<size_t>(n);
  }
}
}  // namespace

void set_fd(int fd) { g_fd = fd; }

void failure(const char* step, const char* syscall_name, int err, const char* path,
             const char* detail) {
  char s[96], sc[64], p[2048], d[1024];
  snprintf(s, sizeof s, "%s", step ? step : "");
  snprintf(sc, sizeof sc, "%s", syscall_name ? syscall_name : "");
  snprintf(p, sizeof p, "%s", path ? path : "");
  snprintf(d, sizeof d, "%s", detail ? detail : "");
  sanitize(s);
  sanitize(sc);
  sanitize(p);
  sanitize(d);
  char buf[4000];
  int n = snprintf(buf, sizeof buf, "ERR\t%s\t%s\t%d\t%s\t%s\n", s, sc, err, p, d);
  if (n > 0)
    write_all(buf, static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1);
}

void die(const char* step, const char* syscall_name, int err, const char* path,
         const char* detail) {
  failure(step, syscall_name, err, path, detail);
  _exit(125);
}

void line(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (static_cast<size_t>(n) > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  write_all(buf, static_cast<size_t>(n));
}

}  // namespace report
