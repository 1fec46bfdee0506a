#!/usr/bin/env bash
# strop ABI test — install the build into a temporary prefix, then build and run
# tests/abi/consumer.c against the installed copy twice: with pkg-config and with CMake's
# find_package(strop) → strop::strop. Also checks the installed SONAME and symlinks.
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

# ---- 1: pkg-config ----
export PKG_CONFIG_PATH=$pcdir
pcflags=(--define-variable=prefix="$prefix")
got=$(pkg-config "${pcflags[@]}" --modversion strop) || die "pkg-config cannot find strop"
[ "$got" = "$version" ] || die "pkg-config --modversion says $got, expected $version"
flags=$(pkg-config "${pcflags[@]}" --cflags --libs strop)
step "pkg-config --cflags --libs strop: $flags"
pkg-config "${pcflags[@]}" --static --libs strop >/dev/null || die "pkg-config --static cannot resolve the private dependencies"
# shellcheck disable=SC2086
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror "$src/tests/abi/consumer.c" -o "$tmp/consumer_pc" $flags ||
  die "building the consumer with pkg-config flags failed"

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

for exe in "$tmp/consumer_pc" "$tmp/cbuild/consumer"; do
  # the consumer must load the installed copy, not the build tree's
  where=$(LD_LIBRARY_PATH=$libdir ldd "$exe" | awk '$1 ~ /^libstrop\.so/ {print $3}')
  [ "$where" = "$libdir/libstrop.so.0" ] || die "$(basename "$exe") resolves libstrop to '$where', not the installed copy"
  LD_PRELOAD=$preload LD_LIBRARY_PATH=$libdir "$exe" || die "$exe failed"
done
echo "abi_consumer: ok — pkg-config and find_package consumers built and ran against the installed libstrop $version"
