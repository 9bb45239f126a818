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
 * UNDERLAY_NS. One `stat` per prompt (~1 ms), nothing per keystroke; a PS1
 * the student sets is kept (the marker goes in front of it).
 */
const FN = [
  '() {',
  '  local -a ref cur',
  '  cur=($(stat -L -c %i /proc/self/ns/{cgroup,ipc,mnt,net,pid,user,uts} 2>/dev/null))',
  '  [ "${#cur[@]}" = 7 ] || return 0',
  '  [ -n "${UNDERLAY_NS:-}" ] || export UNDERLAY_NS="${cur[*]}"',
  '  ref=($UNDERLAY_NS)',
  '  [ "$PS1" = "${__underlay_ps1_set-}" ] || __underlay_ps1=$PS1',
  '  local m= n i=0',
  '  for n in cgroup ipc mnt net pid user uts; do',
  '    [ "${ref[i]}" = "${cur[i]}" ] || m+="${m:+,}$n"',
  '    i=$((i + 1))',
  '  done',
  '  PS1="${m:+\\[\\e[1;33m\\][$m]\\[\\e[0m\\] }$__underlay_ps1"',
  '  __underlay_ps1_set=$PS1',
  '}',
].join('\n');

export const PROMPT_ENV: Record<string, string> = {
  'BASH_FUNC___underlay_ns%%': FN,
  PROMPT_COMMAND: '__underlay_ns',
};
