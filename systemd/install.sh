#!/bin/sh
# Installs the binaries usrsvc and usrsvcd and the usrsvcd systemd units:
#   usrsvc, usrsvcd  -> $DESTDIR$BINDIR/                   (mode 755, from BINSRC)
#   usrsvcd@.service -> $DESTDIR/usr/lib/systemd/system/  (system manager, one instance per account)
#   usrsvcd.service  -> $DESTDIR/usr/lib/systemd/user/    (systemctl --user)
#
# Usage: install.sh [DESTDIR=DIR] [BINDIR=DIR] [BINSRC=DIR]
#   DESTDIR  staging root for packages (DESTDIR=$pkgdir, DESTDIR=$RPM_BUILD_ROOT); default none.
#            Also read from the environment, as in usrsvc 1.5.13.
#   BINDIR   where the binaries go on the target; default /usr/bin. The Exec lines of the
#            installed units are rewritten to $BINDIR/usrsvcd.
#   BINSRC   where the built binaries are; default the checkout's target/release (build them
#            first: cargo build --release). Without them only the units are installed (warning).
#
# Runs from any directory. Runs no systemctl: it prints the commands that come next.
set -eu

prog=install.sh

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
}

DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-/usr/bin}
BINSRC=${BINSRC:-}

for arg in "$@"; do
    case $arg in
        DESTDIR=*) DESTDIR=${arg#DESTDIR=} ;;
        BINDIR=*) BINDIR=${arg#BINDIR=} ;;
        BINSRC=*) BINSRC=${arg#BINSRC=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$arg' (usage: $prog [DESTDIR=DIR] [BINDIR=DIR] [BINSRC=DIR])" ;;
    esac
done

# Collapse repeated slashes and drop trailing ones, so "/", "//" and "" all mean the real root
# and "$DESTDIR/usr/lib" never holds "//" (as 1.5.13's install.sh did).
normalise() {
    printf '%s\n' "$1" | sed -e 's#//*#/#g' -e 's#/*$##'
}
DESTDIR=$(normalise "$DESTDIR")
BINDIR=$(normalise "$BINDIR")

# systemd wants an absolute path in Exec lines, and a space or '%' there would need quoting or
# escaping; refuse what the rewrite below cannot carry unchanged.
case $BINDIR in
    /*) ;;
    *) die "BINDIR must be an absolute path, got '$BINDIR'" ;;
esac
case $BINDIR in
    *[!A-Za-z0-9/._+@-]*) die "BINDIR may hold only letters, digits and / . _ + @ -, got '$BINDIR'" ;;
esac

src_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) ||
    die "cannot find the directory of $0"

tmp=$(mktemp) || die "cannot create a temporary file"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# install_unit NAME DIR: copy $src_dir/NAME to $DESTDIR$DIR/NAME, mode 644, with its Exec lines
# pointing at $BINDIR/usrsvcd.
install_unit() {
    name=$1
    dir=$DESTDIR$2
    src=$src_dir/$name
    [ -r "$src" ] || die "missing $src (install.sh must stay beside the unit files)"
    sed -e "/^Exec/s#=/usr/bin/usrsvcd #=$BINDIR/usrsvcd #" "$src" >"$tmp" ||
        die "cannot write $tmp"
    grep -q "^ExecStart=$BINDIR/usrsvcd " "$tmp" ||
        die "$src has no 'ExecStart=/usr/bin/usrsvcd ...' line to rewrite"
    mkdir -p -- "$dir" ||
        die "cannot create $dir (run as root, or pass DESTDIR=DIR to stage a package)"
    install -m 644 -- "$tmp" "$dir/$name" ||
        die "cannot install $dir/$name (run as root, or pass DESTDIR=DIR to stage a package)"
    printf 'installed %s\n' "$dir/$name"
}

# The binaries, when they are built: both or neither (a usrsvc and a usrsvcd of different
# builds would disagree on the state files they share).
[ -n "$BINSRC" ] || BINSRC=${CARGO_TARGET_DIR:-$src_dir/../target}/release
if [ -f "$BINSRC/usrsvc" ] && [ -x "$BINSRC/usrsvc" ] && [ -f "$BINSRC/usrsvcd" ] && [ -x "$BINSRC/usrsvcd" ]; then
    mkdir -p -- "$DESTDIR$BINDIR" ||
        die "cannot create $DESTDIR$BINDIR (run as root, or pass DESTDIR=DIR to stage a package)"
    for bin in usrsvc usrsvcd; do
        install -m 755 -- "$BINSRC/$bin" "$DESTDIR$BINDIR/$bin" ||
            die "cannot install $DESTDIR$BINDIR/$bin (run as root, or pass DESTDIR=DIR to stage a package)"
        printf 'installed %s\n' "$DESTDIR$BINDIR/$bin"
    done
else
    printf '%s: warning: no built usrsvc and usrsvcd in %s (run cargo build --release first, or pass BINSRC=DIR); installing the units only\n' \
        "$prog" "$BINSRC" >&2
fi

install_unit 'usrsvcd@.service' /usr/lib/systemd/system
install_unit usrsvcd.service /usr/lib/systemd/user

if [ -z "$DESTDIR" ] && [ ! -x "$BINDIR/usrsvcd" ]; then
    printf '%s: warning: %s is not an executable; the units will not start until it is\n' \
        "$prog" "$BINDIR/usrsvcd" >&2
fi

cat <<EOF

Next steps (install.sh runs no systemctl${DESTDIR:+; run these on the target system}):
  For the system manager, one instance per account (as root):
    systemctl daemon-reload
    systemctl enable --now usrsvcd@USER
  Or for the user's own manager (as USER), with linger so it runs without a login:
    systemctl --user daemon-reload
    systemctl --user enable --now usrsvcd
    loginctl enable-linger USER
  Use one of the two per account, not both. See README.md in the systemd/ directory.
EOF
