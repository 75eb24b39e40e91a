package packaging

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment of the re-executed test binary for the MemoryDenyWriteExecute
// check: the child sets PR_SET_MDWE, then execs this binary.
const mdweExecEnv = "PLANTEDGE_TEST_MDWE_EXEC"

var (
	scratch   string // TestMain's temp dir, removed at exit
	buildOnce sync.Once
	built     *packages
	buildErr  error
)

// packages is the result of one `make package` run, shared by all tests.
type packages struct {
	version string // package version without the "-1" release
	deb     string
	rpm     string
	root    string // the .deb extracted with dpkg-deb -x
}

func TestMain(m *testing.M) {
	if path := os.Getenv(mdweExecEnv); path != "" {
		os.Exit(mdweChild(path))
	}
	dir, err := os.MkdirTemp("", "plantedge-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging test: temp dir:", err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mdweChild turns on the kernel's MDWE rule (the mechanism behind systemd's
// MemoryDenyWriteExecute=), proves it is enforced, then execs path version.
func mdweChild(path string) int {
	const prSetMDWE, mdweRefuseExecGain = 65, 1
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, mdweRefuseExecGain, 0, 0, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_MDWE):", e)
		return 77
	}
	b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err == nil {
		syscall.Munmap(b)
		fmt.Fprintln(os.Stderr, "MDWE not enforced: W+X mmap succeeded")
		return 78
	}
	err = syscall.Exec(path, []string{path, "version"}, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 79
}

// repoRoot is the module root: the parent of this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// build runs `make package` once per test binary run and extracts the .deb.
func build(t *testing.T) *packages {
	t.Helper()
	requireTool(t, "make")
	requireTool(t, "dpkg-deb")
	root := repoRoot(t)
	// make takes PKG_EXAMPLE_CONFIG from the environment too.
	example := cmp.Or(os.Getenv("PKG_EXAMPLE_CONFIG"), filepath.Join(root, "packaging", "plantedge.yaml"))
	if _, err := os.Stat(example); err != nil && os.Getenv("CI") == "" {
		t.Skipf("example config not there yet: %v", err)
	}
	buildOnce.Do(func() { built, buildErr = makePackages(root) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func makePackages(root string) (*packages, error) {
	ver, err := exec.Command(filepath.Join(root, "packaging", "version.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("version.sh: %w", err)
	}
	p := &packages{version: strings.TrimSpace(string(ver))}
	dist := filepath.Join(scratch, "dist")
	cmd := exec.Command("make", "-C", root, "--no-print-directory", "package",
		"DIST="+dist, "PKG_VERSION="+p.version, "PKG_ARCH="+runtime.GOARCH)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("make package: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "packaging test: make package took %v\n", time.Since(start).Round(time.Millisecond))
	for _, pat := range []struct {
		glob string
		dst  *string
	}{{"*.deb", &p.deb}, {"*.rpm", &p.rpm}} {
		m, _ := filepath.Glob(filepath.Join(dist, pat.glob))
		if len(m) != 1 {
			return nil, fmt.Errorf("want one %s in %s, got %v\n%s", pat.glob, dist, m, out)
		}
		*pat.dst = m[0]
	}
	p.root = filepath.Join(scratch, "root")
	if out, err := exec.Command("dpkg-deb", "-x", p.deb, p.root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %w\n%s", err, out)
	}
	return p, nil
}

// docFiles are the names of the repository's docs/*.md, which the packages
// install beside the README.
func docFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no docs/*.md found")
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

// debEntry is one line of `dpkg-deb -c`.
type debEntry struct{ mode, owner string }

func TestDebContents(t *testing.T) {
	p := build(t)
	entries := map[string]debEntry{}
	sc := bufio.NewScanner(strings.NewReader(run(t, "", "dpkg-deb", "-c", p.deb)))
	for sc.Scan() {
		// drwxr-x--- plantedge/plantedge 0 2026-01-01 00:00 ./var/lib/plantedge/
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb -c line %q", sc.Text())
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		entries[path] = debEntry{mode: f[0], owner: f[1]}
	}
	want := map[string]debEntry{
		"/usr/bin/plantedge":                    {"-rwxr-xr-x", "root/root"},
		"/lib/systemd/system/plantedge.service": {"-rw-r--r--", "root/root"},
		"/etc/plantedge":                        {"drwxr-x---", "root/plantedge"},
		"/usr/share/plantedge/plantedge.yaml":   {"-rw-r--r--", "root/root"},
		"/usr/share/doc/plantedge/README.md":    {"-rw-r--r--", "root/root"},
		"/var/lib/plantedge":                    {"drwxr-x---", "plantedge/plantedge"},
	}
	// The README's docs/ beside it, so that its links work on the box.
	for _, doc := range docFiles(t) {
		want["/usr/share/doc/plantedge/docs/"+doc] = debEntry{"-rw-r--r--", "root/root"}
	}
	for path, w := range want {
		got, ok := entries[path]
		if !ok {
			t.Errorf("%s missing from the package", path)
			continue
		}
		if got != w {
			t.Errorf("%s: got %s %s, want %s %s", path, got.mode, got.owner, w.mode, w.owner)
		}
	}
	// Nothing else but the directories leading to them.
	for path, e := range entries {
		if _, ok := want[path]; !ok && e.mode[0] != 'd' {
			t.Errorf("unexpected file in package: %s", path)
		}
	}
}

func TestDebControl(t *testing.T) {
	p := build(t)
	info := run(t, "", "dpkg-deb", "-I", p.deb)
	for _, want := range []string{
		"Package: plantedge\n",
		"Version: " + p.version + "-1\n",
		"Architecture: " + runtime.GOARCH + "\n",
		"Maintainer: ",
		"Description: ",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	ctl := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, "", "dpkg-deb", "-e", p.deb, ctl)
	// No conffile: an upgrade whose example changed must not stop to ask
	// (postinstall makes /etc/plantedge/plantedge.yaml when there is none).
	if b, err := os.ReadFile(filepath.Join(ctl, "conffiles")); err == nil && strings.TrimSpace(string(b)) != "" {
		t.Errorf("conffiles = %q, want none", b)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		path := filepath.Join(ctl, s)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("maintainer script %s: %v", s, err)
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", s, fi.Mode())
		}
		run(t, "", "sh", "-n", path)
	}
	// nfpm copies the scripts verbatim; the script tests below test what ships.
	for deb, src := range map[string]string{"preinst": "preinstall.sh", "postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		got, err1 := os.ReadFile(filepath.Join(ctl, deb))
		want, err2 := os.ReadFile(filepath.Join("scripts", src))
		if err := cmp.Or(err1, err2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s in the package differs from scripts/%s", deb, src)
		}
	}
}

func TestRPMBuilt(t *testing.T) {
	p := build(t)
	b, err := os.ReadFile(p.rpm)
	if err != nil {
		t.Fatal(err)
	}
	// RPM lead magic.
	if len(b) < 96 || !bytes.Equal(b[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("%s is not an RPM", p.rpm)
	}
	if want := "plantedge-" + p.version + "-1."; !strings.HasPrefix(filepath.Base(p.rpm), want) {
		t.Errorf("rpm name %s, want prefix %s", filepath.Base(p.rpm), want)
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm not installed; the RPM's contents are not listed")
	}
	list := run(t, "", "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]", p.rpm)
	// The config restored after an upgrade from a release where it was a
	// %config file (rpm erases it after the new %post).
	if scripts := run(t, "", "rpm", "-qp", "--scripts", p.rpm); !strings.Contains(scripts, "posttrans scriptlet") ||
		!strings.Contains(scripts, "plantedge.yaml.rpmsave") {
		t.Errorf("rpm lacks the posttrans scriptlet:\n%s", scripts)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root  /usr/bin/plantedge",
		"-rw-r--r-- root/root  /usr/share/plantedge/plantedge.yaml",
		"-rw-r--r-- root/root  /usr/share/doc/plantedge/README.md",
		"-rw-r--r-- root/root  /usr/share/doc/plantedge/docs/runbook.md",
		"drwxr-x--- plantedge/plantedge  /var/lib/plantedge",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("rpm lacks %q:\n%s", want, list)
		}
	}
}

// unitDirectives parses a systemd unit into "Section.Key" -> values.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: not a directive: %q", path, i+1, line)
			}
			d[section+"."+k] = append(d[section+"."+k], v)
		}
	}
	return d
}

func TestUnitDirectives(t *testing.T) {
	p := build(t)
	d := unitDirectives(t, filepath.Join(p.root, "lib/systemd/system/plantedge.service"))
	want := []struct{ key, value string }{
		{"Service.Type", "notify"},
		{"Service.NotifyAccess", "main"},
		{"Service.WatchdogSec", "30s"},
		{"Service.Restart", "on-failure"},
		{"Service.RestartSec", "5s"},
		{"Service.TimeoutStopSec", "30s"},
		{"Service.User", "plantedge"},
		{"Service.Group", "plantedge"},
		{"Service.StateDirectory", "plantedge"},
		{"Service.StateDirectoryMode", "0750"},
		{"Service.ExecStartPre", "-/usr/bin/plantedge validate -c /etc/plantedge/plantedge.yaml"},
		{"Service.RestartPreventExitStatus", "78 243"},
		{"Service.ExecStart", "/usr/bin/plantedge run -c /etc/plantedge/plantedge.yaml"},
		{"Service.ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service.LoadCredential", "odoo-api-key:/etc/plantedge/odoo-api-key"},
		{"Service.NoNewPrivileges", "yes"},
		{"Service.ProtectSystem", "strict"},
		{"Service.ProtectHome", "yes"},
		{"Service.PrivateTmp", "yes"},
		{"Service.PrivateDevices", "yes"},
		{"Service.RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"Service.CapabilityBoundingSet", ""},
		{"Service.SystemCallFilter", "@system-service"},
		{"Service.SystemCallFilter", "~@privileged"},
		{"Service.SystemCallErrorNumber", "EPERM"},
		{"Service.SystemCallArchitectures", "native"},
		{"Service.ReadWritePaths", "/var/lib/plantedge"},
		{"Service.ProtectKernelTunables", "yes"},
		{"Service.ProtectKernelModules", "yes"},
		{"Service.ProtectKernelLogs", "yes"},
		{"Service.ProtectControlGroups", "yes"},
		{"Service.RestrictNamespaces", "yes"},
		{"Service.LockPersonality", "yes"},
		{"Service.MemoryDenyWriteExecute", "yes"},
		{"Service.RestrictRealtime", "yes"},
		{"Service.RestrictSUIDSGID", "yes"},
		{"Service.ProtectClock", "yes"},
		{"Service.ProtectHostname", "yes"},
		{"Service.ProtectProc", "invisible"},
		{"Service.RemoveIPC", "yes"},
		{"Service.RuntimeDirectory", "plantedge"},
		{"Service.RuntimeDirectoryMode", "0750"},
		{"Service.UMask", "0027"},
		{"Service.MemoryMax", "512M"},
		{"Install.WantedBy", "multi-user.target"},
		{"Unit.Wants", "network-online.target"},
		{"Unit.After", "network-online.target"},
	}
	for _, w := range want {
		if got := d[w.key]; !slices.Contains(got, w.value) {
			t.Errorf("%s: got %q, want %q", w.key, got, w.value)
		}
	}
	// Directives whose second occurrence would silently widen or reset them.
	for _, k := range []string{"Service.ReadWritePaths", "Service.CapabilityBoundingSet", "Service.RestrictAddressFamilies", "Service.User", "Service.ExecStart"} {
		if n := len(d[k]); n != 1 {
			t.Errorf("%s set %d times, want once", k, n)
		}
	}
}

// verifiableUnit copies the unit with its ExecStart paths pointing into the
// extracted package, so systemd-analyze checks the binary that ships.
func verifiableUnit(t *testing.T, p *packages) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.root, "lib/systemd/system/plantedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/bin/plantedge", filepath.Join(p.root, "usr/bin/plantedge"))
	path := filepath.Join(t.TempDir(), "plantedge.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnitVerify(t *testing.T) {
	p := build(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: unit not verified")
	}
	unit := verifiableUnit(t, p)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", unit)
	out, err := cmd.CombinedOutput()
	// verify exits 0 on unknown keys and bad values; any output is a finding.
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestUnitSecurityExposure(t *testing.T) {
	p := build(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: exposure not measured")
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", verifiableUnit(t, p)).CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("Overall exposure level")) {
		t.Skipf("systemd-analyze security --offline unsupported: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security exposure: %.1f (0 = locked down, 10 = unprotected)", level)
	// 2.0 is the level the unit was written to; more means hardening was lost.
	if level > 2.0 {
		t.Errorf("exposure level %.1f > 2.0:\n%s", level, out)
	}
}

func TestExtractedBinary(t *testing.T) {
	p := build(t)
	bin := filepath.Join(p.root, "usr/bin/plantedge")
	out := run(t, "", bin, "version")
	if !strings.HasPrefix(out, "plantedge "+p.version+"\n") {
		t.Errorf("version output %q, want it to start with %q", out, "plantedge "+p.version)
	}
	if strings.Contains(out, "commit: unknown") {
		t.Errorf("commit not stamped: %q", out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("binary has an ELF interpreter: not statically linked")
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": runtime.GOARCH} {
		if settings[k] != v {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
		}
	}
}

// TestBinaryUnderMemoryDenyWriteExecute runs the shipped binary under
// PR_SET_MDWE, the kernel rule systemd uses for MemoryDenyWriteExecute= where
// available, so the unit's setting cannot kill the agent.
func TestBinaryUnderMemoryDenyWriteExecute(t *testing.T) {
	p := build(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), mdweExecEnv+"="+filepath.Join(p.root, "usr/bin/plantedge"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 77 {
		t.Skipf("kernel lacks PR_SET_MDWE (Linux >= 6.3): %s", out)
	}
	if err != nil {
		t.Fatalf("plantedge version under MDWE: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "plantedge "+p.version) {
		t.Errorf("unexpected output under MDWE: %q", out)
	}
}

// fakeCommands puts logging stand-ins for the user, service and ownership
// tools first in PATH; getent answers with getentRC (0 = the user exists).
func fakeCommands(t *testing.T, getentRC int) (env []string, logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "calls.log")
	fake := fmt.Sprintf("#!/bin/sh\necho \"$(basename \"$0\") $*\" >> %q\n", logPath)
	for _, name := range []string{"adduser", "addgroup", "useradd", "groupadd", "systemctl", "chown", "chmod"} {
		body := fake + "exit 0\n"
		if name == "systemctl" { // is-active fails with $FAKE_INACTIVE, enable with $FAKE_ENABLE_FAILS
			body = fake + "[ \"$1\" = is-active ] && [ -n \"$FAKE_INACTIVE\" ] && exit 3\n" +
				"case \" $* \" in *\" enable \"*) [ -n \"$FAKE_ENABLE_FAILS\" ] && exit 1 ;; esac\nexit 0\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// runuser -u USER -- CMD...: logged, then CMD runs (as this user).
	runuser := fake + "shift 3\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "runuser"), []byte(runuser), 0o755); err != nil {
		t.Fatal(err)
	}
	getent := fmt.Sprintf("%sexit %d\n", fake, getentRC)
	if err := os.WriteFile(filepath.Join(dir, "getent"), []byte(getent), 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH")), logPath
}

// TestMaintainerScripts runs each script with the arguments dpkg and rpm pass,
// against a scratch DPKG_ROOT and logging fakes of systemctl, adduser & co.
func TestMaintainerScripts(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		args      []string
		userKnown bool // getent finds the user
		systemd   bool // /run/systemd/system exists
		calls     []string
		notCalls  []string
		stdout    string
		gone      []string // paths under the root removed afterwards
		kept      []string
		inactive  bool              // systemctl is-active says no
		noEnable  bool              // systemctl enable fails
		noSystemd bool              // no systemctl on PATH at all (a container)
		noConfig  bool              // no /etc/plantedge/plantedge.yaml before
		rpmsave   bool              // an edited plantedge.yaml.rpmsave before
		want      map[string]string // path under the root -> content afterwards
		// validate is the body of a stand-in for the new binary
		// (ROOT/usr/bin/plantedge), run by the upgrade to check the config;
		// stderr what the script must say on its stderr.
		validate string
		stderr   string
	}{
		{name: "preinst install creates user", script: "preinstall.sh", args: []string{"install"},
			calls: []string{"addgroup --quiet --system plantedge", "adduser --quiet --system --ingroup plantedge --home /var/lib/plantedge --no-create-home"}},
		{name: "preinst upgrade keeps user", script: "preinstall.sh", args: []string{"upgrade", "0.1.0-1"}, userKnown: true,
			notCalls: []string{"adduser", "addgroup", "useradd", "groupadd"}},
		{name: "rpm pre install creates user", script: "preinstall.sh", args: []string{"1"},
			calls: []string{"adduser --quiet --system"}},
		{name: "postinst first install enables, does not start", script: "postinstall.sh", args: []string{"configure", ""}, systemd: true,
			calls:    []string{"systemctl daemon-reload", "enable plantedge.service", "chown plantedge:plantedge ", "chmod 0750 "},
			notCalls: []string{"start", "restart"}, stdout: "plantedge is installed and enabled, but NOT started."},
		{name: "postinst first install whose enable fails does not say enabled", script: "postinstall.sh", args: []string{"configure", ""}, systemd: true,
			noEnable: true, calls: []string{"enable plantedge.service"}, notCalls: []string{"start", "restart"},
			stdout: "plantedge is installed, but NOT enabled and NOT started.", stderr: "could not enable plantedge.service; run: systemctl enable plantedge"},
		{name: "postinst first install in a container without systemctl", script: "postinstall.sh", args: []string{"configure", ""},
			noSystemd: true, noConfig: true, calls: []string{"chown plantedge:plantedge "}, notCalls: []string{"systemctl"},
			stdout: "plantedge is installed, but NOT enabled (no systemctl here) and NOT started.",
			want:   map[string]string{"etc/plantedge/plantedge.yaml": "example"}},
		{name: "postinst first install makes the config from the example", script: "postinstall.sh", args: []string{"configure", ""}, noConfig: true,
			calls: []string{"chown root:plantedge " + "ROOT/etc/plantedge/plantedge.yaml", "chmod 0640 ROOT/etc/plantedge/plantedge.yaml"},
			want:  map[string]string{"etc/plantedge/plantedge.yaml": "example"}},
		{name: "postinst upgrade keeps the admin's config", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"},
			want: map[string]string{"etc/plantedge/plantedge.yaml": "x"}},
		{name: "postinst upgrade makes a config removed by hand", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"}, noConfig: true,
			want: map[string]string{"etc/plantedge/plantedge.yaml": "example"}},
		{name: "postinst first install without systemd", script: "postinstall.sh", args: []string{"configure"},
			calls: []string{"enable plantedge.service"}, notCalls: []string{"daemon-reload", "start"}, stdout: "NOT started"},
		{name: "postinst upgrade restarts", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"}, systemd: true,
			calls: []string{"systemctl daemon-reload", "systemctl try-restart plantedge.service"}, notCalls: []string{"enable plantedge", "chown"}},
		{name: "postinst upgrade checks the config as the service user, then restarts", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"},
			systemd: true, userKnown: true, validate: "exit 0",
			calls: []string{"runuser -u plantedge -- ROOT/usr/bin/plantedge validate -c ROOT/etc/plantedge/plantedge.yaml", "systemctl try-restart plantedge.service"}},
		{name: "postinst upgrade whose binary refuses the config leaves the running agent", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"},
			systemd: true, userKnown: true,
			validate: "echo \"$3:7:17: machines[0].good_count.rollover: 065536 has a leading zero\" >&2\nexit 1",
			notCalls: []string{"try-restart"}, stderr: "NOT restarted and keeps forwarding:\nROOT/etc/plantedge/plantedge.yaml:7:17: machines[0].good_count.rollover: 065536"},
		{name: "rpm post upgrade whose binary refuses the config", script: "postinstall.sh", args: []string{"2"}, systemd: true, userKnown: true,
			validate: "echo \"$3: permission denied\" >&2\nexit 1", notCalls: []string{"try-restart"}, stderr: "NOT restarted"},
		{name: "postinst upgrade: a check that cannot run is no refusal", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"},
			systemd: true, userKnown: true, validate: "echo 'runuser: cannot set groups' >&2\nexit 1",
			calls: []string{"systemctl try-restart plantedge.service"}},
		{name: "postinst reinstall after a remove says how to start it", script: "postinstall.sh", args: []string{"configure", "0.1.0-1"}, systemd: true,
			inactive: true, calls: []string{"systemctl try-restart plantedge.service"}, notCalls: []string{"enable plantedge", "systemctl start"},
			stdout: "plantedge.service is enabled but not running: systemctl start plantedge"},
		{name: "rpm post install", script: "postinstall.sh", args: []string{"1"}, systemd: true,
			calls: []string{"enable plantedge.service"}, notCalls: []string{"try-restart"}, stdout: "NOT started"},
		{name: "rpm post upgrade", script: "postinstall.sh", args: []string{"2"}, systemd: true,
			calls: []string{"systemctl try-restart plantedge.service"}, notCalls: []string{"enable plantedge"}},
		{name: "prerm remove stops, keeps it enabled for a reinstall", script: "preremove.sh", args: []string{"remove"}, systemd: true,
			calls: []string{"systemctl stop plantedge.service"}, notCalls: []string{"disable"}},
		{name: "prerm upgrade leaves it running", script: "preremove.sh", args: []string{"upgrade", "0.2.0-1"}, systemd: true,
			notCalls: []string{"stop", "disable"}},
		{name: "rpm preun erase", script: "preremove.sh", args: []string{"0"}, systemd: true,
			calls: []string{"systemctl stop plantedge.service", "systemctl disable plantedge.service"}},
		{name: "rpm preun upgrade", script: "preremove.sh", args: []string{"1"}, systemd: true,
			notCalls: []string{"stop", "disable"}},
		{name: "postrm remove keeps state and the enable link", script: "postremove.sh", args: []string{"remove"}, systemd: true,
			calls: []string{"systemctl daemon-reload"}, notCalls: []string{"disable"},
			kept: []string{"var/lib/plantedge/buffer.db", "etc/plantedge/odoo-api-key", "etc/systemd/system/multi-user.target.wants/plantedge.service"}},
		{name: "postrm purge removes state, config, key and enable link", script: "postremove.sh", args: []string{"purge"},
			calls: []string{"disable plantedge.service"},
			gone: []string{"var/lib/plantedge", "etc/plantedge/odoo-api-key", "etc/plantedge/plantedge.yaml", "etc/plantedge/plantedge.yaml.dpkg-dist",
				"etc/systemd/system/multi-user.target.wants/plantedge.service"},
			kept: []string{"etc/plantedge/admin-notes"}},
		{name: "postrm remove keeps the config", script: "postremove.sh", args: []string{"remove"},
			kept: []string{"etc/plantedge/plantedge.yaml"}},
		{name: "rpm pre upgrade sets an older .rpmsave apart", script: "preinstall.sh", args: []string{"2"}, userKnown: true, rpmsave: true,
			gone: []string{"etc/plantedge/plantedge.yaml.rpmsave"}, want: map[string]string{"etc/plantedge/plantedge.yaml": "x"}},
		{name: "rpm posttrans puts back a config an upgrade from a conffile release saved aside", script: "posttrans.sh", noConfig: true,
			rpmsave: true, want: map[string]string{"etc/plantedge/plantedge.yaml": "edited"}, gone: []string{"etc/plantedge/plantedge.yaml.rpmsave"},
			calls: []string{"chown root:plantedge ROOT/etc/plantedge/plantedge.yaml", "chmod 0640 ROOT/etc/plantedge/plantedge.yaml"}},
		{name: "rpm posttrans makes a config an upgrade erased", script: "posttrans.sh", noConfig: true,
			want: map[string]string{"etc/plantedge/plantedge.yaml": "example"}},
		{name: "rpm posttrans leaves a config be", script: "posttrans.sh",
			want: map[string]string{"etc/plantedge/plantedge.yaml": "x"}, notCalls: []string{"chown", "chmod"}},
		{name: "rpm postun erase keeps state", script: "postremove.sh", args: []string{"0"},
			kept: []string{"var/lib/plantedge/buffer.db", "etc/plantedge/odoo-api-key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{"var/lib/plantedge/buffer.db": "x", "etc/plantedge/odoo-api-key": "x", "etc/plantedge/admin-notes": "x",
				"etc/plantedge/plantedge.yaml": "x", "etc/plantedge/plantedge.yaml.dpkg-dist": "x", "usr/share/plantedge/plantedge.yaml": "example",
				"etc/systemd/system/multi-user.target.wants/plantedge.service": "x"}
			if tc.noConfig {
				delete(files, "etc/plantedge/plantedge.yaml")
			}
			if tc.rpmsave {
				files["etc/plantedge/plantedge.yaml.rpmsave"] = "edited"
			}
			for f, content := range files {
				if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, f), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.systemd {
				if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.validate != "" {
				if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "usr/bin/plantedge"), []byte("#!/bin/sh\n"+tc.validate+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			rc := 2
			if tc.userKnown {
				rc = 0
			}
			env, logPath := fakeCommands(t, rc)
			cmd := exec.Command("sh", append([]string{filepath.Join("scripts", tc.script)}, tc.args...)...)
			cmd.Env = append(env, "DPKG_ROOT="+root)
			if tc.inactive {
				cmd.Env = append(cmd.Env, "FAKE_INACTIVE=1")
			}
			if tc.noEnable {
				cmd.Env = append(cmd.Env, "FAKE_ENABLE_FAILS=1")
			}
			if tc.noSystemd {
				// Only the stand-ins (less systemctl) and the tools the
				// script needs besides them: no systemctl to be found.
				fakes := filepath.Dir(logPath)
				if err := os.Remove(filepath.Join(fakes, "systemctl")); err != nil {
					t.Fatal(err)
				}
				tools := t.TempDir()
				for _, name := range []string{"cp", "cat", "basename"} {
					path, err := exec.LookPath(name)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(path, filepath.Join(tools, name)); err != nil {
						t.Fatal(err)
					}
				}
				cmd.Env = append(cmd.Env, "PATH="+fakes+":"+tools)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", tc.script, tc.args, err, stdout.String(), stderr.String())
			}
			logged, err := os.ReadFile(logPath)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			calls := strings.ReplaceAll(string(logged), root, "ROOT")
			for path, want := range tc.want {
				if b, err := os.ReadFile(filepath.Join(root, path)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", path, b, err, want)
				}
			}
			for _, c := range tc.calls {
				if !strings.Contains(calls, c) {
					t.Errorf("no call containing %q; calls:\n%s", c, calls)
				}
			}
			for _, c := range tc.notCalls {
				for _, line := range strings.Split(calls, "\n") {
					if strings.Contains(line, c) && !strings.HasPrefix(line, "getent") {
						t.Errorf("unexpected call %q", line)
					}
				}
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
			if errOut := strings.ReplaceAll(stderr.String(), root, "ROOT"); !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			for _, g := range tc.gone {
				if _, err := os.Stat(filepath.Join(root, g)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still there after %s %v (stat: %v)", g, tc.script, tc.args, err)
				}
			}
			for _, k := range tc.kept {
				if _, err := os.Stat(filepath.Join(root, k)); err != nil {
					t.Errorf("%s removed by %s %v: %v", k, tc.script, tc.args, err)
				}
			}
		})
	}
}

// TestVersionScript checks the git-describe to package-version mapping and
// that dpkg orders the results the way releases happen.
func TestVersionScript(t *testing.T) {
	tests := []struct{ describe, count, want string }{
		{"", "0", "0.0.0~dev"},
		{"5bd86d1", "12", "0.0.0~dev.12.g5bd86d1"},
		{"5bd86d1-dirty", "12", "0.0.0~dev.12.g5bd86d1+0.dirty"},
		{"v1.2.3-rc.1", "0", "1.2.3~rc.1"},
		{"v1.2.3", "0", "1.2.3"},
		{"v1.2.3-dirty", "0", "1.2.3+0.dirty"},
		{"v1.2.3-4-gabc1234", "0", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "0", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3+build.7", "0", "1.2.3"},
		{"v2.0.0-beta_1-2-gdeadbee", "0", "2.0.0~beta.1+2.gdeadbee"},
	}
	for _, tc := range tests {
		out, err := exec.Command("./version.sh", tc.describe, tc.count).Output()
		if err != nil {
			t.Fatalf("version.sh %q: %v", tc.describe, err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("version.sh %q = %q, want %q", tc.describe, got, tc.want)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed: ordering not checked")
	}
	// Each must sort strictly after the one before it.
	order := []string{"0.0.0~dev", "0.0.0~dev.3.gaaaaaaa", "0.0.0~dev.12.g5bd86d1", "1.2.3~rc.1", "1.2.3", "1.2.3+0.dirty", "1.2.3+4.gabc1234", "1.2.4~rc.1"}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i], "gt", order[i-1]).Run(); err != nil {
			t.Errorf("dpkg: %s is not newer than %s", order[i], order[i-1])
		}
	}
}
