#!/usr/bin/env bash
# Tests the Debian package for real (root only; scripts/test.sh runs it in CI):
#
#   sudo scripts/test-package.sh
#
# Builds the .deb with scripts/package.sh, checks its contents and control files, then on
# this machine: installs it, reinstalls it over itself with an edited conffile, checks the
# binary, the `apitap` system user, the config's owner and mode, a replay run as that user,
# the man page, the completions and `systemd-analyze verify` on the installed unit; purges
# it and checks that nothing is left; then a second cycle: install, remove (the conffile and
# the user stay), purge. An apitap package already installed (a developer machine) is
# purged first, and the package is purged again on the way out, also after a failure.
# Prints "test-package: PASS" at the end; on a failure, says what failed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "test-package: FAIL: $*" >&2
  exit 1
}
step() { echo "test-package: $*"; }

[[ $(id -u) == 0 ]] || fail "must run as root (it installs and purges the apitap package)"

tmp=$(mktemp -d)
cleanup() {
  local rc=$?
  if dpkg_installed_at_all; then
    echo "test-package: purging apitap on exit" >&2
    dpkg --purge apitap >/dev/null 2>&1 || echo "test-package: dpkg --purge apitap failed" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}

# Status abbreviation as in `dpkg -l`: "ii " installed, "rc " removed with its config files
# left, empty or "un"/"pn" when dpkg knows nothing of it.
db_status() { dpkg-query -W -f='${db:Status-Abbrev}' apitap 2>/dev/null || true; }
dpkg_installed_at_all() {
  local s
  s=$(db_status)
  [[ -n "$s" && "$s" != un* && "$s" != pn* ]]
}
trap cleanup EXIT

# The package's file list, for the checks after a purge.
unit=/lib/systemd/system/apitap.service
wants=/etc/systemd/system/multi-user.target.wants/apitap.service
installed_files=(
  /usr/bin/apitap
  "$unit"
  /etc/apitap/sensor.toml
  /usr/share/man/man1/apitap.1.gz
  /usr/share/man/man1/apitap-replay.1.gz
  /usr/share/man/man1/apitap-run.1.gz
  /usr/share/bash-completion/completions/apitap
  /usr/share/zsh/vendor-completions/_apitap
  /usr/share/fish/vendor_completions.d/apitap.fish
  /usr/share/doc/apitap/README.md
  /usr/share/doc/apitap/copyright
)

if dpkg_installed_at_all; then
  # A real install (config, state, user) is not the test's to destroy.
  if [[ "${APITAP_TEST_PACKAGE_FORCE:-}" != 1 ]]; then
    echo "test-package: SKIPPED: apitap is installed here ($(db_status | tr -d ' ')); set APITAP_TEST_PACKAGE_FORCE=1 to purge it and test" >&2
    trap - EXIT
    rm -rf "$tmp"
    exit 0
  fi
  step "apitap is installed ($(db_status | tr -d ' ')): purging it first (APITAP_TEST_PACKAGE_FORCE=1)"
  dpkg --purge apitap >/dev/null || fail "could not purge the apitap package installed before the test"
fi

# --- Build -------------------------------------------------------------------------------
pkgid=$(cargo pkgid -p apitap)
version=${pkgid##*[#@]}
arch=$(dpkg --print-architecture)
step "building the package (apitap $version, $arch)"
deb=$(scripts/package.sh) || fail "scripts/package.sh failed"
[[ -f "$deb" ]] || fail "scripts/package.sh printed '$deb', which is not a file"
[[ $(basename "$deb") == "apitap_${version}_${arch}.deb" ]] ||
  fail "package file is $(basename "$deb"), expected apitap_${version}_${arch}.deb"
step "built $deb ($(du -h "$deb" | cut -f1))"

# --- Package contents --------------------------------------------------------------------
listing=$(dpkg-deb -c "$deb") || fail "dpkg-deb -c cannot read $deb"
for f in "${installed_files[@]}"; do
  grep -q " \.$f\$" <<<"$listing" || fail "the package does not contain $f"
done
grep -q '^-rwxr-xr-x root/root .* \./usr/bin/apitap$' <<<"$listing" ||
  grep -q '^-rwxr-xr-x 0/0 .* \./usr/bin/apitap$' <<<"$listing" ||
  fail "/usr/bin/apitap is not mode 755 root in the package"
if grep -qE '\./usr/share/man/man1/[^ ]*\.1$' <<<"$listing"; then
  fail "the package has an uncompressed man page"
fi
man_pages=$(grep -c '\./usr/share/man/man1/apitap.*\.1\.gz$' <<<"$listing" || true)

[[ $(dpkg-deb -f "$deb" Package) == apitap ]] || fail "control: Package is not apitap"
[[ $(dpkg-deb -f "$deb" Version) == "$version" ]] ||
  fail "control: Version is '$(dpkg-deb -f "$deb" Version)', Cargo says $version"
[[ $(dpkg-deb -f "$deb" Architecture) == "$arch" ]] || fail "control: Architecture is not $arch"
[[ $(dpkg-deb -f "$deb" Section) == net ]] || fail "control: Section is not net"
depends=$(dpkg-deb -f "$deb" Depends)
grep -q 'libpcap0\.8' <<<"$depends" || fail "control: Depends lacks libpcap0.8 (it is: $depends)"
grep -q 'libc6' <<<"$depends" || fail "control: Depends lacks libc6 (it is: $depends)"

ctrl=$tmp/control
mkdir "$ctrl"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$ctrl" || fail "cannot unpack the control archive"
[[ $(cat "$ctrl/conffiles" 2>/dev/null) == /etc/apitap/sensor.toml ]] ||
  fail "conffiles is '$(cat "$ctrl/conffiles" 2>/dev/null)', expected /etc/apitap/sensor.toml"
for s in postinst prerm postrm; do
  [[ -x "$ctrl/$s" ]] || fail "the package has no executable $s"
  sh -n "$ctrl/$s" || fail "$s is not valid sh"
done

packaged_unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$unit") || fail "cannot read the packaged unit"
grep -q '^ExecStart=/usr/bin/apitap run --config /etc/apitap/sensor.toml$' <<<"$packaged_unit" ||
  fail "the packaged unit's ExecStart is not /usr/bin/apitap run --config /etc/apitap/sensor.toml"
! grep -q /usr/local <<<"$packaged_unit" || fail "the packaged unit still names /usr/local"
grep -q '^ExecStart=/usr/local/bin/apitap ' systemd/apitap.service ||
  fail "systemd/apitap.service (the manual-install unit) no longer uses /usr/local/bin/apitap"
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/apitap/sensor.toml) sensor.toml ||
  fail "the packaged /etc/apitap/sensor.toml differs from sensor.toml"
step "contents ok: $(grep -c '^-' <<<"$listing") files, $man_pages man pages, Depends: $depends"

# --- Install -----------------------------------------------------------------------------
install_deb() {
  if ! dpkg -i "$deb" </dev/null >"$tmp/dpkg.log" 2>&1; then
    # Only a missing dependency is fixed up; anything else fails below.
    step "dpkg -i failed; trying apt-get install -f for the dependencies"
    cat "$tmp/dpkg.log" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -f -qq </dev/null >&2 ||
      fail "apt-get install -f could not finish installing the package"
  fi
  [[ $(db_status) == "ii " ]] || { cat "$tmp/dpkg.log" >&2; fail "apitap is not installed after dpkg -i (status '$(db_status)')"; }
}

check_user() {
  local entry uid shell gid_name sys_max
  entry=$(getent passwd apitap) || fail "no user apitap after install"
  uid=$(cut -d: -f3 <<<"$entry")
  shell=$(cut -d: -f7 <<<"$entry")
  sys_max=$(awk '$1 == "SYS_UID_MAX" {print $2}' /etc/login.defs 2>/dev/null)
  if [[ -z "$sys_max" ]]; then
    sys_max=$(awk '$1 == "UID_MIN" {print $2 - 1}' /etc/login.defs 2>/dev/null)
  fi
  sys_max=${sys_max:-999}
  ((uid < sys_max + 1)) || fail "apitap has uid $uid: not a system user (<= $sys_max)"
  [[ "$shell" == */nologin || "$shell" == /bin/false ]] || fail "apitap has login shell $shell"
  getent group apitap >/dev/null || fail "no group apitap after install"
  gid_name=$(id -gn apitap)
  [[ "$gid_name" == apitap ]] || fail "apitap's primary group is $gid_name, not apitap"
  echo "$entry"
}

check_installed() {
  local f out ver
  for f in "${installed_files[@]}"; do
    if [[ $f == /usr/share/man/* ]] && grep -rqs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
      continue # a slim image: dpkg is told not to install man pages
    fi
    [[ -e $f ]] || fail "$f is missing after install"
  done
  ver=$(/usr/bin/apitap --version) || fail "/usr/bin/apitap --version failed"
  [[ "$ver" == "apitap $version" ]] || fail "/usr/bin/apitap --version printed '$ver', expected 'apitap $version'"
  check_user >/dev/null
  out=$(stat -c '%a %U %G' /etc/apitap/sensor.toml)
  [[ "$out" == "640 root apitap" ]] || fail "/etc/apitap/sensor.toml is '$out', expected '640 root apitap'"
  dpkg-query -W -f='${Conffiles}\n' apitap | grep -q '^ /etc/apitap/sensor.toml ' ||
    fail "dpkg does not list /etc/apitap/sensor.toml as a conffile of apitap"
  # Installed, never enabled or started: the sensor needs an interface configured first.
  [[ ! -e "$wants" && ! -L "$wants" ]] || fail "the install enabled apitap.service ($wants exists)"
  if [[ -d /run/systemd/system ]] && systemctl is-active --quiet apitap.service; then
    fail "the install started apitap.service"
  fi
}

step "cycle 1: dpkg -i"
install_deb
check_installed
step "installed: $(/usr/bin/apitap --version); user $(check_user)"

# Reinstall over itself (the upgrade path: prerm upgrade, postinst configure <version>)
# with a local edit in the conffile: the edit stays, the user is reused, the mode is kept.
echo "# local edit by test-package.sh" >>/etc/apitap/sensor.toml
uid_before=$(id -u apitap)
install_deb
check_installed
grep -q '^# local edit by test-package.sh$' /etc/apitap/sensor.toml ||
  fail "reinstalling replaced the locally edited /etc/apitap/sensor.toml"
[[ $(id -u apitap) == "$uid_before" ]] || fail "reinstalling changed the apitap user's uid"
step "reinstall ok: conffile edit kept, same user"

# A replay as the unprivileged user, of a copy of the fixture in a directory it owns.
work=$tmp/replay
mkdir "$work"
chmod 0711 "$tmp"
cp fixtures/pyhttp/pyhttp.pcap "$work/"
chown -R apitap:apitap "$work"
if ! runuser -u apitap -- /usr/bin/apitap replay "$work/pyhttp.pcap" -o "$work/events.jsonl" --quiet \
  2>"$tmp/replay.err"; then
  cat "$tmp/replay.err" >&2
  fail "apitap replay as user apitap failed"
fi
events=$(grep -c '"kind":"event"' "$work/events.jsonl" || true)
[[ "$events" == 4 ]] || fail "the replay as apitap wrote $events events, expected 4 (fixtures/pyhttp)"
[[ $(stat -c %U "$work/events.jsonl") == apitap ]] || fail "the replay output is not owned by apitap"
step "replay as apitap: $events events, $(wc -l <"$work/events.jsonl") lines"

if grep -rqs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  step "man pages: not checked on this machine (dpkg path-exclude for /usr/share/man)"
else
  if command -v man >/dev/null 2>&1; then
    page=$(man -w apitap 2>/dev/null) || fail "man -w apitap finds no page"
    [[ "$page" == /usr/share/man/man1/apitap.1.gz ]] || fail "man -w apitap gives $page"
  fi
  zcat /usr/share/man/man1/apitap.1.gz | grep -q '^\.TH apitap 1' || fail "apitap.1.gz is not a man page"
  step "man page ok"
fi
bash -n /usr/share/bash-completion/completions/apitap || fail "the bash completion is not valid bash"
grep -q '^#compdef apitap' /usr/share/zsh/vendor-completions/_apitap || fail "the zsh completion lacks #compdef apitap"
grep -q '^complete -c apitap' /usr/share/fish/vendor_completions.d/apitap.fish || fail "the fish completion has no 'complete -c apitap'"

# Offline: systemd does not need to run. It checks ExecStart= exists, hence after install.
if ! verify=$(systemd-analyze verify "$unit" 2>&1) || [[ -n "$verify" ]]; then
  echo "$verify" >&2
  fail "systemd-analyze verify $unit"
fi
step "systemd-analyze verify $unit: ok"

# What the sensor and an administrator leave behind, for the purge to clean up: an enabled
# unit (offline `systemctl enable` works without a running systemd: it only makes the
# symlink) and the unit's StateDirectory and LogsDirectory.
if ! systemctl enable apitap.service >/dev/null 2>&1; then
  mkdir -p "$(dirname "$wants")"
  ln -sf "$unit" "$wants"
fi
[[ -L "$wants" ]] || fail "could not enable apitap.service for the purge test"
install -d -o apitap -g apitap /var/lib/apitap /var/log/apitap
echo '{}' >/var/lib/apitap/inventory.json
echo '{}' >/var/log/apitap/events.jsonl

check_purged() {
  local f
  [[ $(db_status) != "ii " && $(db_status) != "rc " ]] || fail "apitap is still known to dpkg after purge ($(db_status))"
  if dpkg -l apitap 2>/dev/null | grep -q '^[ir][iUFHWtc]'; then
    fail "dpkg -l apitap still shows it installed"
  fi
  for f in "${installed_files[@]}" /etc/apitap /var/lib/apitap /var/log/apitap /usr/share/doc/apitap "$wants"; do
    [[ ! -e $f && ! -L $f ]] || fail "$f is left after purge"
  done
  ! getent passwd apitap >/dev/null || fail "user apitap is left after purge"
  ! getent group apitap >/dev/null || fail "group apitap is left after purge"
}

step "cycle 1: dpkg --purge"
dpkg --purge apitap </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge apitap"; }
check_purged
step "purge ok: no files, user, group, config, state or logs left"

# --- Second cycle: install, remove (config and user stay), purge --------------------------
step "cycle 2: dpkg -i, dpkg -r, dpkg --purge"
install_deb
check_installed
dpkg -r apitap </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r apitap"; }
[[ $(db_status) == "rc " ]] || fail "after dpkg -r the status is '$(db_status)', expected 'rc'"
[[ ! -e /usr/bin/apitap && ! -e "$unit" ]] || fail "dpkg -r left the binary or the unit"
[[ -f /etc/apitap/sensor.toml ]] || fail "dpkg -r removed the conffile (only a purge should)"
getent passwd apitap >/dev/null || fail "dpkg -r removed the apitap user (only a purge should)"
dpkg --purge apitap </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "second dpkg --purge apitap"; }
check_purged

step "PASS ($(basename "$deb"): contents, install, reinstall, replay as apitap, man, unit, remove, purge x2)"
