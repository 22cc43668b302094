#!/bin/sh
# Makes a man page from the built CLI's --help with Debian's help2man, so
# that the page says what --help says (`make man` calls this).
#   usage: man/help2man.sh CLI COMMAND OUT    supermachine-COMMAND(1)
#          man/help2man.sh CLI '' OUT         supermachine(1), with man/supermachine.h2m
# NAME's one-line summary is the command's line in `supermachine --help`;
# man/gnu-help.awk lays --help out as help2man expects (no word changed).
set -eu
cli=$(realpath "$1")
cmd=$2
out=$3
here=$(cd "$(dirname "$0")" && pwd)
version=$("$cli" --version | awk '{ print $2 }')
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sm-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# help2man names the page after the program it runs: a wrapper of that name.
if [ -n "$cmd" ]; then
    name=supermachine-$cmd
    summary=$("$cli" --help | awk -v c="$cmd" '$1 == c { $1 = ""; sub(/^ +/, ""); print; exit }')
    [ -n "$summary" ] || { echo "help2man.sh: no command '$cmd' in '$cli --help'" >&2; exit 1; }
    printf '[SEE ALSO]\n.BR supermachine (1)\n' >"$tmp/include.h2m"
else
    name=supermachine
    summary='run commands inside hardware-isolated Linux microVMs'
    cp "$here/supermachine.h2m" "$tmp/include.h2m"
    # SEE ALSO: a page per command, in --help's order.
    {
        printf '[SEE ALSO]\n'
        "$cli" --help | awk '/^commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }' |
            while read -r c; do printf '.BR supermachine\\-%s (1),\n' "$c"; done
        printf '.BR libsupermachine (3)\n'
    } >>"$tmp/include.h2m"
fi
printf '#!/bin/sh\n"%s" %s "$@" 2>&1 | awk -f "%s"\n' "$cli" "$cmd" "$here/gnu-help.awk" >"$tmp/$name"
chmod +x "$tmp/$name"

mkdir -p "$(dirname "$out")"
help2man --no-info --no-discard-stderr --section=1 --manual='User Commands' \
    --source="supermachine $version" --version-string="$version" --name="$summary" \
    --include="$tmp/include.h2m" --output="$out.tmp" "$tmp/$name"
mv "$out.tmp" "$out"
