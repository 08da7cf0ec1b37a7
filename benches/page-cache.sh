# How a benchmark's capture is cached before it is timed, shared by benches/against-cat.sh
# and benches/peers.sh so both compare tools against the same floor. Sourced, not run.
#
# How fast `cat` reads a cached file depends on how the file came into the cache. The
# kernel's read-ahead caches a file read from disk in large pieces; a file just written in
# small writes (tcpdump, exwatch generate) stays cached in the small pieces it was written
# in, and reading it costs about twice as much: cat of the 468 MB org capture takes 0.04 s
# in the first state and 0.10 s in the second, which flatters every tool's ratio to cat.
#
#   page_cache_check STATE     exits 2 unless STATE is reread or keep
#   page_cache_prepare FILE STATE
#                              reread: writes FILE's pages out, drops them and reads FILE
#                              once (the state of a capture read from disk; exits 2 when
#                              the pages cannot be dropped); keep: reads FILE once, as it
#                              is cached

page_cache_check() {
  case $1 in reread | keep) ;; *)
    echo "$(basename "$0" .sh): PAGE_CACHE must be reread or keep, not '$1'" >&2
    exit 2
    ;;
  esac
}

page_cache_prepare() {
  local file=$1 state=$2
  if [ "$state" = reread ]; then
    # Written pages must reach the disk before they can be dropped; when they cannot
    # (a file on a read-only mount has none), dropping says whether it worked.
    sync "$file" 2>/dev/null || true
    if ! dd if="$file" iflag=nocache count=0 status=none; then
      echo "$(basename "$0" .sh): cannot drop $file from the page cache (PAGE_CACHE=keep measures it as it is)" >&2
      exit 2
    fi
  fi
  cat "$file" >/dev/null
}
