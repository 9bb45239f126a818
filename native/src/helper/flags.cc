#include "flags.h"

#include <sched.h>
#include <sys/mount.h>

#include <cstring>

namespace flags {
namespace {

struct Named {
  const char* name;
  unsigned long value;
};

const Named kMount[] = {
    {"MS_RDONLY", MS_RDONLY},   {"MS_NOSUID", MS_NOSUID},
    {"MS_NODEV", MS_NODEV},     {"MS_NOEXEC", MS_NOEXEC},
    {"MS_REMOUNT", MS_REMOUNT}, {"MS_BIND", MS_BIND},
    {"MS_REC", MS_REC},         {"MS_PRIVATE", MS_PRIVATE},
    {"MS_SLAVE", MS_SLAVE},     {"MS_SHARED", MS_SHARED},
    {"MS_MOVE", MS_MOVE},       {"MS_RELATIME", MS_RELATIME},
    {"MS_NOATIME", MS_NOATIME}, {"MS_STRICTATIME", MS_STRICTATIME},
};

const Named kClone[] = {
    {"CLONE_NEWNS", CLONE_NEWNS},     {"CLONE_NEWUTS", CLONE_NEWUTS},
    {"CLONE_NEWIPC", CLONE_NEWIPC},   {"CLONE_NEWNET", CLONE_NEWNET},
    {"CLONE_NEWPID", CLONE_NEWPID},   {"CLONE_NEWCGROUP", CLONE_NEWCGROUP},
    {"CLONE_NEWUSER", CLONE_NEWUSER},
};

template <size_t N>
bool parse(const std::string& names, const Named (&table)[N], unsigned long* out) {
  *out = 0;
  size_t pos = 0;
  while (pos < names.size()) {
    size_t bar = names.find('|', pos);
    std::string one = names.substr(pos, bar == std::string::npos ? std::string::npos : bar - pos);
    bool found = false;
    for (const Named& n : table) {
      if (one == n.name) {
        *out |= n.value;
        found = true;
        break;
      }
    }
    if (!found) return false;
    if (bar == std::string::npos) break;
    pos = bar + 1;
  }
  return true;
}

}  // namespace

bool parse_mount(const std::string& names, unsigned long* out) { return parse(names, kMount, out); }

bool parse_clone(const std::string& names, int* out) {
  unsigned long v = 0;
  if (!parse(names, kClone, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

}  // namespace flags
