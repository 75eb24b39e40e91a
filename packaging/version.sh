#!/bin/sh
# Prints the package version derived from git, valid for both deb and rpm and
# ordered the same way by dpkg and rpm:
#   v1.2.3                 -> 1.2.3
#   v1.2.3-rc.1            -> 1.2.3~rc.1          (pre-release sorts before 1.2.3)
#   v1.2.3-4-gabc1234      -> 1.2.3+4.gabc1234    (commits after a tag sort after it)
#   v1.2.3-dirty           -> 1.2.3+0.dirty
#   v1.2.3-4-gabc1234-dirty-> 1.2.3+4.gabc1234.dirty
#   abc1234 (no tag)       -> 0.0.0~dev.N.gabc1234 (N = commit count, so newer sorts higher)
#   no git at all          -> 0.0.0~dev
# Usage: version.sh [DESCRIBE [COUNT]]  (arguments replace the git queries; used by tests)
set -eu

if [ $# -ge 1 ]; then
	desc=$1
	count=${2:-0}
else
	desc=$(git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null || true)
	count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
fi

dirty=
case $desc in
*-dirty) dirty=.dirty; desc=${desc%-dirty} ;;
esac

out=
case $desc in
'') out=0.0.0~dev ;;
v[0-9]* | [0-9]*.*)
	desc=${desc#v}
	# Split "-N-gHASH" (commits since the tag) off the end if present.
	post=
	if printf '%s\n' "$desc" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
		post=$(printf '%s\n' "$desc" | sed -E 's/^.*-([0-9]+)-(g[0-9a-f]+)$/+\1.\2/')
		desc=$(printf '%s\n' "$desc" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
	fi
	# Semver build metadata is dropped; a pre-release becomes "~pre".
	base=${desc%%+*}
	case $base in
	*-*) base=$(printf '%s\n' "$base" | sed -E 's/-/~/') ;;
	esac
	out=$base$post
	;;
*)
	# No tag: an abbreviated hash only.
	out=0.0.0~dev.$count.g$desc
	;;
esac

# Only characters both dpkg and rpm accept in a version: [A-Za-z0-9.+~].
out=$(printf '%s\n' "$out$dirty" | sed -E 's/[^A-Za-z0-9.+~]+/./g')
# A dirty tree without commits since the tag is still newer than the tag.
case $out in
*+*) ;;
*.dirty) out=$(printf '%s\n' "$out" | sed -E 's/\.dirty$/+0.dirty/') ;;
esac
printf '%s\n' "$out"
