# tests/tmux.sh: helpers for the tests that drive the full-screen chat in tmux (test_tui.sh, test_tui_small.sh),
# sourced after tests/lib.sh. The program runs in the tmux session "tui" of a private server (socket $sock, no
# configuration file), so that the user's own tmux and tests running at the same time never meet.
command -v tmux >/dev/null 2>&1 || skip "tmux is not installed"

# tmux_setup NAME: a temporary directory $tmp and the server lmterm-NAME-PID, both removed at exit
tmux_setup() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmterm-$1.XXXXXX")
	sock="lmterm-$1-$$"
	tmux_socks=$sock
	trap tmux_cleanup EXIT INT TERM
}
# tmux_server SOCKET: T talks to another server from now on (a new session started just after kill-server
# can meet the old server on its way out); it is killed at exit too
tmux_server() {
	sock=$1
	tmux_socks="$tmux_socks $1"
}
tmux_cleanup() {
	for s in $tmux_socks; do tmux -L "$s" -f /dev/null kill-server >/dev/null 2>&1; done
	rm -rf "$tmp"
}
T() { tmux -L "$sock" -f /dev/null "$@"; }

screen() { T capture-pane -p -t tui; }
show() { # keep the screen in the log
	echo "---- screen: $1 ($(T display -p -t tui '#{pane_width}x#{pane_height}'))"
	screen | sed 's/^/|/'
	echo "----"
}
# wait_for PATTERN SECONDS: until the screen matches the extended regex
wait_for() {
	n=0
	while [ $n -lt $(($2 * 10)) ]; do
		screen | grep -Eq -- "$1" && return 0
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}
# wait_for_text STRING SECONDS: until the screen holds the string (no regex)
wait_for_text() {
	n=0
	while [ $n -lt $(($2 * 10)) ]; do
		screen | grep -qF -- "$1" && return 0
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}
# columns of the widest line on the screen (wc -L counts a Chinese character as two in a UTF-8 locale)
widest() { screen | while IFS= read -r l; do printf '%s\n' "$l" | wc -L; done | sort -n | tail -1; }
