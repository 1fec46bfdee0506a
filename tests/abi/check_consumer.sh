#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop ABI test — install the build into a temporary prefix, then build and run
# tests/abi/consumer.c against the installed copy twice: with pkg-config as the README says
# (no --define-variable) and with CMake's find_package(strop) → strop::strop, and run both
# and the installed tool without LD_LIBRARY_PATH. Also checks the installed SONAME and
# symlinks, that the .pc survives moving the prefix, and that an install to /usr gets a
# .pc that says prefix=/usr.
# Usage: check_consumer.sh BUILD_DIR SOURCE_DIR C_COMPILER CMAKE VERSION [SANITIZE]
# With SANITIZE containing "address" the consumers run with the ASan runtime preloaded; exits
# 77 (CTest: skipped) after building them if that runtime cannot be found.
set -euo pipefail
build=$1 src=$2 cc=$3 cmake=$4 version=$5 sanitize=${6:-}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
step() { echo "-- $*"; }
die() { echo "FAIL: $*"; exit 1; }

step "install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; die "cmake --install failed"; }

# GNUInstallDirs may have chosen lib, lib64 or lib/<multiarch>: find where it went
so=$(find "$prefix" -name 'libstrop.so.0' | head -n1)
[ -n "$so" ] || die "no libstrop.so.0 installed under $prefix"
libdir=$(dirname "$so")
pc=$(find "$prefix" -name strop.pc | head -n1)
[ -n "$pc" ] || die "no strop.pc installed"
pcdir=$(dirname "$pc")
[ -f "$prefix/include/strop/strop.h" ] || die "no include/strop/strop.h installed"
[ -n "$(find "$prefix" -name stropConfig.cmake)" ] || die "no stropConfig.cmake installed"
step "library in ${libdir#"$tmp"/}, strop.pc in ${pcdir#"$tmp"/}"

soname=$(readelf -d "$so" | sed -nE 's/.*\(SONAME\).*\[(.*)\].*/\1/p')
[ "$soname" = libstrop.so.0 ] || die "installed SONAME is '$soname', expected libstrop.so.0"
[ -f "$libdir/libstrop.so.$version" ] || die "no libstrop.so.$version installed"
[ "$(readlink "$libdir/libstrop.so.0")" = "libstrop.so.$version" ] ||
  die "libstrop.so.0 does not point at libstrop.so.$version"
[ "$(readlink "$libdir/libstrop.so")" = libstrop.so.0 ] || die "libstrop.so does not point at libstrop.so.0"
if readelf -d "$so" | grep -Eq '\((RUNPATH|RPATH)\).*'"$build"; then
  die "the installed library still has the build tree in its RUNPATH"
fi
step "SONAME $soname, libstrop.so -> libstrop.so.0 -> libstrop.so.$version"

# The man pages name documents (recipes.md, ...): each must be installed in the docdir.
docdir=$(find "$prefix" -type d -path '*/doc/strop' | head -n1)
[ -n "$docdir" ] || die "no share/doc/strop installed"
while read -r man; do
  while read -r doc; do
    [ -f "$docdir/$doc" ] || die "$(basename "$man") names $doc, which is not installed in ${docdir#"$prefix"/}"
  done < <(grep -oE '[a-z_-]+\.md' "$man" | sort -u)
done < <(find "$prefix" -name 'strop.1' -o -name 'libstrop.3')
[ -n "$(find "$prefix" -name strop.1)" ] || die "no strop.1 installed"
step "man pages installed; every document they name is in ${docdir#"$prefix"/}"

# ---- 1: pkg-config, as the README says: PKG_CONFIG_PATH, --cflags --libs, and an rpath to
# the installed libdir so the program finds libstrop.so.0 when it runs ----
export PKG_CONFIG_PATH=$pcdir
got=$(pkg-config --modversion strop) || die "pkg-config cannot find strop"
[ "$got" = "$version" ] || die "pkg-config --modversion says $got, expected $version"
flags=$(pkg-config --cflags --libs strop)
step "pkg-config --cflags --libs strop: $flags"
pc_libdir=$(pkg-config --variable=libdir strop)
[ "$(cd "$pc_libdir" 2>/dev/null && pwd -P)" = "$(cd "$libdir" && pwd -P)" ] ||
  die "pkg-config's libdir is '$pc_libdir', but the library went to $libdir"
pc_incdir=$(pkg-config --variable=includedir strop)
[ -f "$pc_incdir/strop/strop.h" ] || die "pkg-config's includedir '$pc_incdir' has no strop/strop.h"
pkg-config --static --libs strop >/dev/null || die "pkg-config --static cannot resolve the private dependencies"
# shellcheck disable=SC2086
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror "$src/tests/abi/consumer.c" -o "$tmp/consumer_pc" $flags \
  -Wl,-rpath,"$libdir" || die "building the consumer with pkg-config flags failed"

# The .pc names its folders relative to its own (${pcfiledir}): a prefix that is moved
# after installing still works.
mv "$prefix" "$tmp/moved"
moved_flags=$(PKG_CONFIG_PATH=${pcdir/#$prefix/$tmp/moved} pkg-config --cflags strop)
mv "$tmp/moved" "$prefix"
case "$moved_flags" in
  *"$tmp/moved"*) step "after moving the prefix: pkg-config --cflags strop: $moved_flags" ;;
  *) die "after moving the prefix, pkg-config still says '$moved_flags'" ;;
esac

# A distribution's install to /usr (staged with DESTDIR) gets an ordinary .pc: prefix=/usr.
DESTDIR=$tmp/stage "$cmake" --install "$build" --prefix /usr >"$tmp/stage.log" 2>&1 ||
  { cat "$tmp/stage.log"; die "cmake --install --prefix /usr with DESTDIR failed"; }
staged_pc=$(find "$tmp/stage" -name strop.pc | head -n1)
grep -qx 'prefix=/usr' "$staged_pc" || die "the .pc of an install to /usr says: $(head -n4 "$staged_pc")"
rm -rf "$tmp/stage"
step "an install to /usr (DESTDIR) has prefix=/usr in strop.pc"

# The installed tool finds the installed library by itself (RUNPATH $ORIGIN/../<libdir>).
tool=$prefix/bin/strop
if [ -x "$tool" ]; then
  rp=$(readelf -d "$tool" | sed -nE 's/.*\((RUNPATH|RPATH)\).*\[(.*)\].*/\2/p')
  if [ "${STROP_EXPECT_TOOL_RUNPATH-unset}" = "" ]; then
    # configured for a system libdir (a distribution build): no RUNPATH on purpose; the
    # temporary prefix stands in for /usr, so the tool is run below with LD_LIBRARY_PATH
    [ -z "$rp" ] || die "the tool of a build for a system libdir has RUNPATH '$rp'"
    step "installed tool: no RUNPATH (a build for a system libdir)"
    tool_env="LD_LIBRARY_PATH=$libdir"
  else
    # shellcheck disable=SC2016 # the literal text $ORIGIN
    case "$rp" in
      '$ORIGIN/'*) ;;
      *) die "the installed strop tool has RUNPATH '$rp', not one relative to \$ORIGIN" ;;
    esac
    step "installed tool: RUNPATH $rp"
    tool_env=
  fi
fi

# ---- 2: CMake find_package ----
"$cmake" -S "$src/tests/abi/consumer_cmake" -B "$tmp/cbuild" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; die "configuring the find_package consumer failed"; }
grep 'found strop' "$tmp/cmake.log" | sed 's/^/   /' || true
"$cmake" --build "$tmp/cbuild" >"$tmp/cbuild.log" 2>&1 ||
  { cat "$tmp/cbuild.log"; die "building the find_package consumer failed"; }
step "built both consumers"

# A sanitized libstrop needs the ASan runtime loaded before everything else; a plain consumer
# does not link it, so preload it (the normal build runs the consumers without any of this).
preload=""
case ",$sanitize," in
  *,address,*)
    rt=$("$cc" -print-file-name=libasan.so)
    if [ ! -f "$rt" ]; then
      echo "SKIPPED running the consumers: the library is built with -fsanitize=$sanitize and"
      echo "'$cc -print-file-name=libasan.so' finds no ASan runtime to preload. Install, SONAME,"
      echo "pkg-config and find_package builds were checked; the normal build also runs them."
      exit 77
    fi
    preload=$rt
    step "sanitized build ($sanitize): running the consumers with LD_PRELOAD=$rt"
    ;;
esac

# No LD_LIBRARY_PATH: each program must find the installed copy through its own RUNPATH
# (the rpath from pkg-config, CMake's for an imported target, $ORIGIN for the tool).
unset LD_LIBRARY_PATH
for exe in "$tmp/consumer_pc" "$tmp/cbuild/consumer"; do
  where=$(ldd "$exe" | awk '$1 ~ /^libstrop\.so/ {print $3}')
  [ "$(realpath -m "$where")" = "$(realpath "$libdir/libstrop.so.0")" ] || die "$(basename "$exe") resolves libstrop to '$where', not the installed copy"
  LD_PRELOAD=$preload "$exe" || die "$exe failed"
done
if [ -x "$tool" ]; then
  where=$(env $tool_env ldd "$tool" | awk '$1 ~ /^libstrop\.so/ {print $3}')
  [ "$(realpath -m "$where")" = "$(realpath "$libdir/libstrop.so.0")" ] ||
    die "the installed strop tool resolves libstrop to '$where', not the installed copy"
  out=$(env $tool_env "$tool" version) || die "the installed strop tool does not run: $out"
  step "installed tool runs: $out"
fi
echo "abi_consumer: ok — pkg-config and find_package consumers built and ran against the installed libstrop $version"
