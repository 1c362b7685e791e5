# lib.sh: how the Makefile and the scripts become root, sourced by sh (dash) and bash alike.
# As root: directly. Otherwise through sudo, where it is installed and lets this user.
# Neither: the caller says what it does instead (make run reads the bundled capture, make test
# runs the tests that need no root) and no_root_hint says how to get root.

# is_root: this shell runs as root.
is_root() { [ "$(id -u)" -eq 0 ]; }

# can_be_root: this shell is root, or sudo is installed and lets this user run commands as root
# (it may ask for the password, once).
can_be_root() {
	is_root && return 0
	command -v sudo >/dev/null 2>&1 || return 1
	sudo -v
}

# as_root CMD...: runs CMD as root: directly when root, else through sudo with root's own HOME
# (so that root's Go caches stay root's and the user's stay the user's), passing on the
# settings the tests and the go command read.
as_root() {
	if is_root; then
		"$@"
		return
	fi
	sudo -H env CHAINS_REQUIRE_BPF="${CHAINS_REQUIRE_BPF:-}" CHAINS_TIMING="${CHAINS_TIMING:-}" \
		GOFLAGS="${GOFLAGS:-}" GOPROXY="${GOPROXY:-}" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" "$@"
}

# no_root_hint WHAT: says on stderr that WHAT needs root, which this shell cannot get, and how
# to get it.
no_root_hint() {
	echo "$1 needs root: this shell is not root and sudo is not installed or does not let $(id -un)." >&2
	echo "  Log in as root (su -) and run the same command there, or install sudo as root" >&2
	echo "  (apt-get install sudo) and give $(id -un) a rule (usermod -aG sudo $(id -un))." >&2
}
