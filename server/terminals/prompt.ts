/**
 * A marker in the terminal's prompt naming the namespaces the shell is in
 * that differ from its sandbox's: after `unshare --uts --pid --fork bash`
 * the prompt reads `[pid,uts] root@lab-box:~#`. Students lose track of which
 * shell is where; the hostname alone only shows UTS.
 *
 * Passed as environment, so nested shells (`unshare ... bash`, `nsenter`)
 * inherit it with no change to the image: bash imports the exported function
 * `__underlay_ns` (BASH_FUNC_<name>%%) and runs it as PROMPT_COMMAND. The
 * first shell records its own namespaces (those of the sandbox) in
 * UNDERLAY_NS (the server passes it to a terminal's own shell, which then
 * runs nothing). One `stat` per nested shell, at its first prompt (a shell's
 * namespaces never change after it starts), none per prompt or keystroke: a
 * fork at every prompt would show (ps, pids.max experiments). A PS1 the
 * student sets is kept (the marker goes in front of it).
 */
const FN = [
  '() {',
  '  if [ -z "${__underlay_m+x}" ]; then',
  // Once per shell: a shell's namespaces do not change after it starts.
  // Not in a shell whose children go to a new pid namespace (`unshare --pid`
  // without --fork): its first child becomes that namespace's init, which
  // the ns-pid lab shows with the student's own first command.
  '    [[ /proc/self/ns/pid -ef /proc/self/ns/pid_for_children ]] || return 0',
  // A terminal's own shell is in the sandbox's namespaces by construction
  // (the server passes their inodes): no `stat` (a fork and an exec per
  // terminal, paid three times by every student starting a lab). SHLVL=1:
  // not a shell that another one started (a startup file's `exec` of a shell
  // in new namespaces keeps SHLVL at 1, and shows no marker: cosmetic).
  '    if [ -n "${UNDERLAY_NS_TOP:-}" ] && [ "${SHLVL:-}" = 1 ]; then',
  '      unset UNDERLAY_NS_TOP',
  '      __underlay_m=',
  '      return 0',
  '    fi',
  '    unset UNDERLAY_NS_TOP',
  '    local -a ref cur',
  '    cur=($(stat -L -c %i /proc/self/ns/{cgroup,ipc,mnt,net,pid,user,uts} 2>/dev/null))',
  '    [ "${#cur[@]}" = 7 ] || return 0',
  '    [ -n "${UNDERLAY_NS:-}" ] || export UNDERLAY_NS="${cur[*]}"',
  '    ref=($UNDERLAY_NS)',
  '    local n i=0',
  '    __underlay_m=',
  '    for n in cgroup ipc mnt net pid user uts; do',
  '      [ "${ref[i]}" = "${cur[i]}" ] || __underlay_m+="${__underlay_m:+,}$n"',
  '      i=$((i + 1))',
  '    done',
  '  fi',
  '  [ -n "$__underlay_m" ] || return 0',
  '  [ "$PS1" = "${__underlay_ps1_set-}" ] || __underlay_ps1=$PS1',
  '  PS1="\\[\\e[1;33m\\][$__underlay_m]\\[\\e[0m\\] $__underlay_ps1"',
  '  __underlay_ps1_set=$PS1',
  '}',
].join('\n');

const KINDS = ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts'];

/**
 * The environment of a terminal's shell. `nsInode(kind)` gives the inode of
 * the sandbox's namespace of that kind (its init's); when it cannot, the shell
 * finds them itself with `stat`.
 */
export function promptEnv(nsInode: (kind: string) => number): Record<string, string> {
  const env: Record<string, string> = {
    'BASH_FUNC___underlay_ns%%': FN,
    // Quiet where the function did not come through (a bash started from
    // busybox sh, which drops BASH_FUNC_ variables).
    PROMPT_COMMAND: '__underlay_ns 2>/dev/null',
  };
  try {
    env.UNDERLAY_NS = KINDS.map((k) => nsInode(k)).join(' ');
    env.UNDERLAY_NS_TOP = '1';
  } catch {
    // the init is gone: the shell will not start anyway
  }
  return env;
}
