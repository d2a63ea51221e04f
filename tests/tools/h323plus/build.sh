#!/usr/bin/env bash
# Build an independent H.323 test peer from public source: PTLib 2.10.9 (github.com/willamowius/ptlib,
# master 500dbda) + H323Plus 1.28 (github.com/willamowius/h323plus, master ea20729), with h323peer.cxx
# beside this script (a small scriptable endpoint on the H323Plus API) and h263-ffmpeg5.patch (the
# H.263 plugin ported to FFmpeg 5+). About 4 minutes on 2 cores.
#
# Result (PREFIX, default ~/.cache/h323peer):
#   bin/h323peer                  runs as is (RPATH $ORIGIN/../lib, plugins found beside it)
#   lib/h323peer-plugins/         H.261 (vic) and H.263 (libavcodec) codec plugins
#   media/tone440.wav             8 kHz mono 16-bit, 440 Hz, 20 s
#   BUILD-INFO                    what was built from what
#
# Usage: build.sh [PTLIB_SRC [H323PLUS_SRC]]
#   Without arguments the sources are unpacked from ptlib-src.tar.xz and h323plus-src.tar.xz beside
#   this script into BUILD_DIR/src.
# Environment:
#   PREFIX     install prefix                       (default ~/.cache/h323peer)
#   BUILD_DIR  scratch build directory              (default ~/.cache/h323peer-build)
#   JOBS       make -j value                        (default 2; the build runs at nice 19)
#   SELFTEST   0 skips the loopback self-call at the end (default 1; uses 127.0.0.1 only)
#   NO_APT     1 skips installing missing Debian build packages
#   PEER_ONLY  1 recompiles and reinstalls only h323peer.cxx (seconds instead of minutes)
# Needs: Debian 12 (bookworm) or similar; FFmpeg 5 (libavcodec 59) for the H.263 plugin.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=${PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/h323peer}
BUILD_DIR=${BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/h323peer-build}
JOBS=${JOBS:-2}
SELFTEST=${SELFTEST:-1}
# H323Plus's makefiles read PREFIX from the environment and then miss their own generated headers
# (h225.h): keep these variables to this script.
export -n PREFIX BUILD_DIR JOBS SELFTEST
if [ $# -eq 0 ]; then
  mkdir -p "$BUILD_DIR.src"
  for name in ptlib h323plus; do
    [ -d "$BUILD_DIR.src/$name" ] || tar -xJf "$HERE/$name-src.tar.xz" -C "$BUILD_DIR.src"
  done
fi
PTSRC=$(cd "${1:-$BUILD_DIR.src/ptlib}" && pwd)
H3SRC=$(cd "${2:-$BUILD_DIR.src/h323plus}" && pwd)

renice -n 19 -p $$ >/dev/null 2>&1 || true     # other jobs on this machine are benchmarks
T0=$SECONDS
step() { echo "== [$((SECONDS - T0))s] $*"; }
run() {  # run LOGNAME command...: quiet, log kept, tail shown on failure
  local log=$BUILD_DIR/logs/$1.log; shift
  if ! nice -n 19 "$@" >"$log" 2>&1; then
    echo "FAILED: $* (log $log)"; tail -30 "$log"; return 1
  fi
}

[ -f "$PTSRC/version.h" ] && [ -d "$PTSRC/src/ptlib" ] || { echo "not a PTLib tree: $PTSRC"; exit 2; }
[ -f "$H3SRC/version.h" ] && [ -f "$H3SRC/include/h323.h" ] || { echo "not an H323Plus tree: $H3SRC"; exit 2; }

export PTLIBDIR=$BUILD_DIR/ptlib OPENH323DIR=$BUILD_DIR/h323plus
if [ "${PEER_ONLY:-0}" = 1 ]; then
  [ -x "$PREFIX/bin/h323peer" ] && ls "$OPENH323DIR"/lib/libh323_*.so.*.*.* >/dev/null 2>&1 ||
    { echo "PEER_ONLY needs an earlier full build in $BUILD_DIR and $PREFIX"; exit 2; }
fi

# --- 0. Debian packages --------------------------------------------------------------------
PKGS="build-essential pkg-config flex bison patch libexpat1-dev libavcodec-dev libavutil-dev sox"
missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "${NO_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
    echo "missing packages: $missing"; exit 2
  fi
  step "apt-get install $missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null
  }
fi

if [ "${PEER_ONLY:-0}" != 1 ]; then
# --- 1. fresh copies of the sources --------------------------------------------------------
step "copy sources into $BUILD_DIR"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR/logs"
copy_tree() {  # leave out build products of an earlier in-place build
  mkdir -p "$2"
  tar -C "$1" --exclude='./.git' --exclude='obj_*' --exclude='./obj' --exclude='*/obj' \
      --exclude='lib_*' --exclude='./lib' --exclude='*.o' --exclude='*.so' --exclude='*.so.*' \
      --exclude='*.a' --exclude='config.status' --exclude='config.log' -cf - . | tar -C "$2" -xf -
}
copy_tree "$PTSRC" "$BUILD_DIR/ptlib"
copy_tree "$H3SRC" "$BUILD_DIR/h323plus"
# both are plain make/autoconf trees; keep the environment from pointing them elsewhere
unset PTLIBPLUGINDIR PWLIBPLUGINDIR CXXFLAGS CFLAGS LDFLAGS

# --- 2. PTLib --------------------------------------------------------------------------------
# No sound/video device plugins (the peer brings its own media), no OpenSSL/LDAP/SASL/Lua/ODBC/SDL.
step "PTLib: configure"
cd "$PTLIBDIR"
run ptlib-configure ./configure --prefix="$PREFIX" --enable-plugins \
  --disable-openssl --disable-openldap --disable-sasl --disable-lua --disable-odbc --disable-sdl \
  --disable-alsa --disable-oss --disable-pulse --disable-sndio --disable-v4l --disable-v4l2 \
  --disable-avc --disable-dc --disable-ffvdev --disable-shmvideo --disable-appshare
step "PTLib: make -j$JOBS optshared"
run ptlib-make make -j"$JOBS" optshared

# --- 3. H323Plus -----------------------------------------------------------------------------
# --enable-minsize: audio + video only (no H.450/H.460/T.38/TLS ...): a plain endpoint; --enable-h239
# puts H.239 (dual stream: the extended video channel and the presentation token) back in.
step "H323Plus: configure (also configures plugins/)"
cd "$OPENH323DIR"
run h323plus-configure ./configure --prefix="$PREFIX" --enable-minsize --enable-h239
step "H323Plus: make -j$JOBS optshared"
# generated ASN.1 headers can race a parallel make: finish serially if the parallel pass fails
run h323plus-make make -j"$JOBS" optshared || run h323plus-make-serial make -j1 optshared

# --- 4. video codec plugins (a bonus: audio G.711 is built into H323Plus) -------------------
PLUGINS=()
step "plugin H.261 (vic)"
if run plugin-h261 make -C plugins/video/H.261-vic; then
  PLUGINS+=("$OPENH323DIR/plugins/video/H.261-vic/h261-vic_video_pwplugin.so")
fi
step "plugin H.263 (libavcodec $(pkg-config --modversion libavcodec 2>/dev/null || echo '?'), patched for FFmpeg 5+)"
# plugins/configure reports H.263 as unavailable (FFmpeg 5 no longer exports h263p_encoder), but it
# still generates the plugin's Makefile, which links -lavcodec -lavutil; build it directly.
if run h263-patch patch -p1 -i "$HERE/h263-ffmpeg5.patch" &&
   run plugin-h263 make -C plugins/video/H.263-1998; then
  PLUGINS+=("$OPENH323DIR/plugins/video/H.263-1998/h263-1998_video_pwplugin.so")
else
  echo "   (H.263 plugin not built; the peer offers H.261 video only)"
fi
fi  # PEER_ONLY
PTLIB_SO=$(ls "$PTLIBDIR"/lib_*/libpt.so.*.*.* | head -1)
H323_SO=$(ls "$OPENH323DIR"/lib/libh323_*.so.*.*.* | head -1)

# --- 5. the peer -----------------------------------------------------------------------------
step "h323peer: compile"
mkdir -p "$BUILD_DIR/peer"
cp "$HERE/h323peer.cxx" "$BUILD_DIR/peer/"
cat > "$BUILD_DIR/peer/Makefile" <<'EOF'
PROG    = h323peer
SOURCES := h323peer.cxx
include $(OPENH323DIR)/openh323u.mak
EOF
run peer-compile make -C "$BUILD_DIR/peer" optshared   # compiles with H323Plus's own flags
PEER_OBJ=$(ls "$BUILD_DIR"/peer/obj_*/h323peer.o | head -1)

# --- 6. install --------------------------------------------------------------------------------
step "install into $PREFIX"
if [ "${PEER_ONLY:-0}" != 1 ]; then
  rm -rf "$PREFIX/bin" "$PREFIX/lib"
  mkdir -p "$PREFIX/bin" "$PREFIX/lib/h323peer-plugins" "$PREFIX/media"
  cp "$PTLIB_SO" "$H323_SO" "$PREFIX/lib/"
  for p in "${PLUGINS[@]}"; do cp "$p" "$PREFIX/lib/h323peer-plugins/"; done
fi
# link again with an RPATH (DT_RPATH, so libh323 finds libpt too) relative to the binary
run peer-link g++ -o "$PREFIX/bin/h323peer" "$PEER_OBJ" \
  -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/../lib' -L"$PREFIX/lib" \
  -l:"$(basename "$H323_SO")" -l:"$(basename "$PTLIB_SO")" -lresolv -lpthread -lrt -lexpat -ldl
if command -v sox >/dev/null; then
  sox -n -r 8000 -c 1 -b 16 "$PREFIX/media/tone440.wav" synth 20 sine 440 vol 0.5
else
  ffmpeg -loglevel error -y -f lavfi -i 'sine=frequency=440:sample_rate=8000:duration=20' \
    -ac 1 -c:a pcm_s16le "$PREFIX/media/tone440.wav"
fi
ver() { awk '/define MAJOR_VERSION/{a=$3} /define MINOR_VERSION/{b=$3} /define BUILD_NUMBER/{c=$3} END{print a"."b"."c}' "$1/version.h"; }
rev() {
  if [ -e "$1/.git" ]; then git -C "$1" log -1 --format='%h %cs'
  elif [ -f "$1/.source-rev" ]; then cat "$1/.source-rev"
  else echo "revision unknown"; fi
}
{
  echo "h323peer built $(date -u +%Y-%m-%dT%H:%MZ) by build.sh"
  echo "PTLib    $(ver "$PTSRC") from $PTSRC ($(rev "$PTSRC"))"
  echo "H323Plus $(ver "$H3SRC") from $H3SRC ($(rev "$H3SRC")), configure --enable-minsize --enable-h239"
  echo "libavcodec $(pkg-config --modversion libavcodec 2>/dev/null || echo none)"
  echo "plugins: $(cd "$PREFIX/lib/h323peer-plugins" && ls | tr '\n' ' ')"
} > "$PREFIX/BUILD-INFO"
"$PREFIX/bin/h323peer" --list-caps | sed -n '/Table:/,/Set:/p' | grep -v 'Table:\|Set:' | sed 's/^/   offers/'

# --- 7. self-call on loopback ---------------------------------------------------------------
if [ "$SELFTEST" = 1 ]; then
  step "self-test: h323peer -l on 127.0.0.1:17441, caller on 17442 for 5 s"
  st=$BUILD_DIR/selftest; mkdir -p "$st"
  timeout 30 "$PREFIX/bin/h323peer" -l --once -x 17441 --tone 660 --rtp-base 46500 --rtp-max 46999 \
    --wav-out "$st/listener_rx.wav" > "$st/listener.log" 2>&1 &
  lpid=$!
  sleep 1
  timeout 30 "$PREFIX/bin/h323peer" -n -x 17442 --duration 5 --rtp-base 46000 --rtp-max 46499 \
    --wav-in "$PREFIX/media/tone440.wav" --wav-out "$st/rx.wav" h323:80000001@127.0.0.1:17441 \
    > "$st/caller.log" 2>&1 || true
  wait $lpid 2>/dev/null || true
  conn=$(grep -ci 'connected\|established' "$st/caller.log" || true)
  rms=$(sox "$st/rx.wav" -n stat 2>&1 | awk '/RMS *amplitude/ {print $3}')
  grep -E '^(Audio|Video|Call|Media)' "$st/caller.log" | sed 's/^/   /'
  echo "   self-test: connected-lines=$conn rx_rms=${rms:-none} (logs in $st)"
  if [ "${conn:-0}" -lt 1 ] || ! awk -v r="${rms:-0}" 'BEGIN{exit !(r > 0.005)}'; then
    echo "SELF-TEST FAILED"; exit 1
  fi
fi
step "done: $PREFIX/bin/h323peer (total $((SECONDS - T0)) s)"
