// underlay-nsexec: the one program that changes namespaces.
//
// Node is always multithreaded (libuv pool, V8), and setns(2) refuses a
// multithreaded caller for user namespaces and for mount namespaces shared
// through CLONE_FS. So, like runc's nsexec and node-pty's spawn-helper, the
// namespace work happens in this small single-threaded, statically linked
// executable, started fresh for every sandbox and every join.
//
//   underlay-nsexec create          op list on stdin, "OK <init pid>" or ERR on stdout
//   underlay-nsexec join ... -- CMD  enter a sandbox and run CMD (see join.cc)
#include <cstdio>
#include <cstring>

namespace create {
int run(int argc, char** argv);
}
namespace join {
int run(int argc, char** argv);
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "create") == 0) return create::run(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "join") == 0) return join::run(argc, argv);
  fprintf(stderr, "usage: underlay-nsexec create | join --pid N [...] -- CMD...\n");
  return 2;
}
