{
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fstack-protector-strong", "-D_GNU_SOURCE"],
    "cflags": ["-Wall", "-Wextra", "-Werror"]
  },
  "targets": [
    {
      "target_name": "underlay_native",
      "sources": ["src/addon.cc", "src/errors.cc", "src/mount.cc", "src/pidfd.cc", "src/spawn.cc", "src/console.cc", "src/helper/flags.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"]
    },
    {
      "target_name": "underlay-nsexec",
      "type": "executable",
      "sources": ["src/helper/main.cc", "src/helper/create.cc", "src/helper/join.cc", "src/helper/spec.cc", "src/helper/ops.cc", "src/helper/flags.cc", "src/helper/report.cc", "src/helper/seccomp.cc"],
      "ldflags": ["-static"]
    }
  ]
}
