package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
)

// validateOdoo checks a valid configuration against Odoo (work centers, loss
// reasons, the bot user's rights) and writes what it found to w. It is set
// by the code that owns the Odoo client; nil means this build cannot do it.
var validateOdoo func(ctx context.Context, cfg *config.Config, file string, w io.Writer) error

// validateOPCUA checks the OPC UA nodes the machines use on their servers;
// file names the configuration in what it prints.
var validateOPCUA func(ctx context.Context, cfg *config.Config, file string, w io.Writer) error

// validateMQTT checks the MQTT topics the machines use on their brokers.
var validateMQTT func(ctx context.Context, cfg *config.Config, file string, w io.Writer) error

type validateOptions struct {
	config string
	odoo   bool
	opcua  bool
	mqtt   bool
}

// AddFlags registers the command's flags.
func (o *validateOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.config, "config", "c", defaultConfig, "config file")
	cmd.Flags().BoolVar(&o.odoo, "odoo", false, "also check work centers, loss reasons and the bot user's rights in Odoo")
	cmd.Flags().BoolVar(&o.opcua, "opcua", false, "also read every OPC UA node the machines use: it must exist and hold a value its signal can use")
	cmd.Flags().BoolVar(&o.mqtt, "mqtt", false, "also subscribe to every MQTT topic the machines use and check the first message of each (5 s)")
}

func newValidateCmd() *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration file; print every problem with file:line:column",
		Long: "validate checks the configuration file and prints every problem with file:line:column, the key path\n" +
			"and what to do, then the warnings (likely slips that do not stop the agent). --odoo, --opcua and\n" +
			"--mqtt also check the file against Odoo, the OPC UA servers and the MQTT brokers.\n\n" +
			"It exits 0 when there is no problem (warnings allowed) and 1 on any problem.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return o.Run(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// Run validates the file: problems go to errw and give exit code 1, and so
// do problems the --odoo, --opcua and --mqtt checks find (on w); a check this build
// cannot do gives exit code 2.
func (o *validateOptions) Run(ctx context.Context, w, errw io.Writer) error {
	warned := &warnCounter{w: errw}
	errw = warned
	cfg, err := loadConfig(o.config)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			src, _ := os.ReadFile(o.config)                        // for the source lines; best effort
			lines := strings.Split(string(config.Text(src)), "\n") // numbered as the parser did
			// An unknown key's value is not needed to fix its name, and a
			// misspelt api_key or password would show the secret: hidden
			// on every snippet of its line, whichever problem shows it.
			unknownAt := map[int][]int{} // line -> columns of unknown keys
			for _, p := range ce.Problems {
				// A known key at the wrong level (rollover: 65536) holds
				// no secret: shown.
				// Nor does a misspelt key nearest a known one named like
				// no secret (sit: for site:): its value helps, and a
				// secret on its line is still hidden (maskSecrets).
				if p.Msg == "unknown key" && !strings.HasPrefix(p.Hint, "check its indentation: it belongs") && !plainTypo(p) {
					unknownAt[p.Line] = append(unknownAt[p.Line], p.Column)
				}
			}
			// A section's keys said missing when the section is there,
			// misspelt (odo: for odoo:): said with them.
			misspelt := map[string]config.Problem{} // known top-level key -> the unknown one near it
			for _, p := range ce.Problems {
				if p.Msg == "unknown key" && p.Meant != "" && !strings.ContainsAny(p.Path, ".[") {
					misspelt[p.Meant] = p
				}
			}
			// Likewise a machine's or a source's key (Workcenter: for
			// workcenter:, good count: for good_count:): keyed by the
			// path the known key would have.
			nested := map[string]config.Problem{}
			for _, p := range ce.Problems {
				if i := strings.LastIndex(p.Path, "."); p.Msg == "unknown key" && p.Meant != "" && i > 0 {
					nested[p.Path[:i+1]+p.Meant] = p
				}
			}
			signals := []string{"good_count", "scrap_count", "running", "downtime_reason"}
			lastKey := func(path string) string { return path[strings.LastIndex(path, ".")+1:] }
			meantAs := func(key string, line int, as string) string {
				return fmt.Sprintf(" — is %s: at line %d meant as %s:?", key, line, as)
			}
			for _, p := range ce.Problems {
				line := p.String()
				top, _, _ := strings.Cut(strings.SplitN(p.Path, "[", 2)[0], ".")
				required := strings.HasPrefix(p.Msg, "required") || strings.Contains(p.Msg, " is required")
				if u, ok := misspelt[top]; ok && u.Line != p.Line && required {
					line += meantAs(u.Path, u.Line, top)
				} else if u, ok := nested[p.Path]; ok && u.Line != p.Line && required {
					line += meantAs(lastKey(u.Path), u.Line, lastKey(p.Path))
				} else if p.Msg == "machine has no signal" {
					for _, sig := range signals {
						if u, ok := nested[p.Path+"."+sig]; ok {
							line += meantAs(lastKey(u.Path), u.Line, sig)
							break
						}
					}
				}
				fmt.Fprintln(errw, line)
				printSnippet(errw, lines, p.Line, p.Column, unknownAt[p.Line])
			}
			// Shown now too: fixing the problems must not reveal more.
			for _, p := range ce.Warnings {
				fmt.Fprintln(errw, "warning: "+p.String())
			}
			return &exitError{code: 1, msg: fmt.Sprintf("%s: %s", o.config, plural(len(ce.Problems), "problem"))}
		}
		return &exitError{code: 1, msg: err.Error()}
	}
	for _, p := range cfg.Warnings {
		fmt.Fprintln(errw, "warning: "+p.String())
	}
	// Where the agent would find its key, on this machine: not a problem of
	// the file (a package ships the file name before the key exists).
	if _, _, err := cfg.OdooAPIKeySource(); err != nil && !errors.Is(err, config.ErrNoSecret) && !errors.Is(err, os.ErrPermission) && !errors.Is(err, syscall.EISDIR) {
		// Found but unusable (two lines in it): the agent would send
		// something Odoo refuses. (A file this user may not read is the
		// agent's to read; a directory is said below.)
		p := cfg.Position("odoo.api_key_file")
		fmt.Fprintf(errw, "warning: %s:%d:%d: odoo.api_key_file: %v\n", o.config, p.Line, p.Column, err)
	} else if errors.Is(err, config.ErrNoSecret) && credentialName(cfg.Odoo.APIKeyFile) {
		p := cfg.Position("odoo.api_key_file")
		fmt.Fprintf(errw, "warning: %s:%d:%d: odoo.api_key_file: %s, or the agent would have no Odoo API key (the packaged unit loads /etc/plantedge/odoo-api-key as the credential odoo-api-key by itself)\n",
			o.config, p.Line, p.Column, credentialHint("key"))
	} else if errors.Is(err, config.ErrNoSecret) {
		at := "odoo.api_key_file"
		if cfg.Odoo.APIKeyFile == "" {
			at = "odoo"
		}
		p := cfg.Position(at)
		fmt.Fprintf(errw, "warning: %s:%d:%d: %s: %v: the agent would have no Odoo API key (write the bot user's key to odoo.api_key_file, root-only with mode 0600: the unit hands it to the agent as the credential odoo-api-key)\n",
			o.config, p.Line, p.Column, at, err)
	}
	// The sources' password files, likewise.
	secret := func(path, file, what string) {
		if file == "" {
			return
		}
		if _, err := config.ReadSecret(file); err != nil {
			p := cfg.Position(path)
			if errors.Is(err, os.ErrNotExist) && credentialName(file) {
				fmt.Fprintf(errw, "warning: %s:%d:%d: %s: %s, or it could not log in to %s\n", o.config, p.Line, p.Column, path, credentialHint("password"), what)
				return
			}
			consequence := "the agent could not log in to " + what
			if errors.Is(err, os.ErrPermission) {
				consequence = notReadableHint(file)
			}
			fmt.Fprintf(errw, "warning: %s:%d:%d: %s: %v: %s\n", o.config, p.Line, p.Column, path, err, consequence)
		}
	}
	// A password_env unset here may be set in the agent's own environment
	// (the unit's EnvironmentFile=): said, not failed.
	envSecret := func(path, env, what string) {
		if env == "" {
			return
		}
		if _, err := config.EnvSecret(env); err != nil {
			p := cfg.Position(path)
			fmt.Fprintf(errw, "warning: %s:%d:%d: %s: %v: the agent could not log in to %s unless its own environment has it (this check runs in yours)\n",
				o.config, p.Line, p.Column, path, err, what)
		}
	}
	for i, s := range cfg.OPCUA {
		secret(fmt.Sprintf("opcua[%d].password_file", i), s.PasswordFile, "OPC UA server "+s.Name)
		envSecret(fmt.Sprintf("opcua[%d].password_env", i), s.PasswordEnv, "OPC UA server "+s.Name)
	}
	for i, b := range cfg.MQTT {
		secret(fmt.Sprintf("mqtt[%d].password_file", i), b.PasswordFile, "MQTT broker "+b.Name)
		envSecret(fmt.Sprintf("mqtt[%d].password_env", i), b.PasswordEnv, "MQTT broker "+b.Name)
	}
	o.checkMachine(cfg, errw)
	if n := o.checkCertDates(cfg, errw, time.Now()); n > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %s", o.config, plural(n, "expired certificate"))}
	}
	// What a source's connector refuses at start that the checks above
	// did not catch: the agent would run without that source.
	if err := agent.CheckSources(cfg, false); err != nil {
		fmt.Fprintf(errw, "%s: %v\n", o.config, err)
		return &exitError{code: 1, msg: fmt.Sprintf("%s: a source its connector refuses (the agent would not read it)", o.config)}
	}
	var online []string
	for _, c := range []struct {
		on   bool
		name string
	}{{o.odoo, "Odoo"}, {o.opcua, "the OPC UA servers"}, {o.mqtt, "the MQTT brokers"}} {
		if c.on {
			online = append(online, c.name)
		}
	}
	printSummary(w, cfg, warned.n, strings.Join(online, ", "))
	var failed []string
	if o.odoo {
		if validateOdoo == nil {
			return &exitError{code: 2, msg: "--odoo: not available in this build"}
		}
		if err := validateOdoo(ctx, cfg, o.config, w); err != nil {
			failed = append(failed, "odoo: "+err.Error())
		}
	}
	if o.opcua {
		if validateOPCUA == nil {
			return &exitError{code: 2, msg: "--opcua: not available in this build"}
		}
		if err := validateOPCUA(ctx, cfg, o.config, w); err != nil {
			failed = append(failed, "opcua: "+err.Error())
		}
	}
	if o.mqtt {
		if validateMQTT == nil {
			return &exitError{code: 2, msg: "--mqtt: not available in this build"}
		}
		if err := validateMQTT(ctx, cfg, o.config, w); err != nil {
			failed = append(failed, "mqtt: "+err.Error())
		}
	}
	if len(failed) > 0 {
		return &exitError{code: 1, msg: strings.Join(failed, "; ")}
	}
	return nil
}

// asServiceUser: validate runs as the packaged unit's user, plantedge —
// what it cannot use, the agent cannot either.
func asServiceUser() bool { return currentUser() == "plantedge" }

// underSystemd reports whether systemd started this process as a service
// (it sets INVOCATION_ID for each): the packaged unit's ExecStartPre
// (validate) or ExecStart (run), whose sandbox (ProtectSystem=strict)
// makes the file system read-only for the agent outside the unit's
// directories. Outside it, a read-only file system is read-only for root
// too.
func underSystemd() bool { return os.Getenv("INVOCATION_ID") != "" }

// nearestExisting is the nearest directory above path that exists (the
// root at last): where a mkdir -p of path starts making directories.
func nearestExisting(path string) string {
	up := filepath.Dir(path)
	for {
		if _, err := os.Stat(up); err == nil || up == filepath.Dir(up) {
			return up
		}
		up = filepath.Dir(up)
	}
}

// cannotCreate says why dataDir, which does not exist, cannot be made in
// up, the nearest part of its path that does (cause: what access(2) or a
// mkdir there answered), and what to do; "" for a nil cause. systemd: a
// service systemd started runs this (underSystemd), whose sandbox makes
// the file system read-only outside the unit's directories. run says a
// read-only file system outside systemd with it too.
func cannotCreate(dataDir, up string, cause error, systemd bool) string {
	const lost = "the agent could not keep its buffer there"
	switch {
	case errors.Is(cause, unix.EROFS) && !systemd:
		// Read-only for root too: no mkdir or chown mends it (the README
		// audit: it said to make it and chown it).
		return onReadOnlyFileSystem(dataDir, up)
	case errors.Is(cause, unix.EROFS):
		// The unit's sandbox, as run says it at its start: made as root
		// outside it, then named in the drop-in.
		return fmt.Sprintf("%s does not exist, and the file system that would hold it is read-only for the agent (%s: %v): %s "+
			"(%s; if it is read-only outside the unit too, give data_dir a directory on a file system mounted read-write, or remount that one)",
			dataDir, up, cause, lost, makeDirHint(dataDir, "plantedge"))
	case errors.Is(cause, unix.EACCES) || errors.Is(cause, unix.EPERM):
		// Said as run says it at its start (the small leads probe:
		// "create another data_dir and chown it", and no word of the
		// unit's drop-in).
		return fmt.Sprintf("%s does not exist, and this user may not create it in %s (%v): %s (%s)",
			dataDir, up, cause, lost, makeDirHint(dataDir, "plantedge"))
	case cause != nil:
		return fmt.Sprintf("%s cannot be created in %s (%v): give data_dir a directory on a disk, e.g. /var/lib/plantedge", dataDir, up, cause)
	}
	return ""
}

// onReadOnlyFileSystem says that data_dir dataDir is on a file system
// that is read-only for root too, and what to do: at is dataDir when it
// exists, else the nearest directory above it that does (where a mkdir
// was refused). That is what a read-only file system (EROFS) is outside
// systemd (!underSystemd): no mkdir, chown or ReadWritePaths= drop-in
// mends it. In a service systemd started, the unit's sandbox
// (ProtectSystem=strict) is what makes it read-only for the agent, and the
// callers keep their drop-in advice. validate and run say it alike, for a
// data_dir there and one to be made.
func onReadOnlyFileSystem(dataDir, at string) string {
	todo := fmt.Sprintf("give data_dir a directory on a file system mounted read-write, or remount that one read-write: findmnt -T %s names it; "+
		"or the kernel remounted it read-only after a disk error: dmesg says", at)
	if filepath.Clean(at) != filepath.Clean(dataDir) {
		return fmt.Sprintf("%s does not exist, and the file system that would hold it is read-only (%s: %v): the agent could not keep its buffer there (%s)",
			dataDir, at, unix.EROFS, todo)
	}
	return fmt.Sprintf("%s is on a file system that is read-only (%v): the agent could not keep its buffer there (%s)", dataDir, unix.EROFS, todo)
}

// notReadableHint is what to do about a file this user may not read.
func notReadableHint(file string) string {
	if asServiceUser() {
		return "not readable by plantedge, the agent's user: chgrp plantedge " + file + " && chmod 640 " + file
	}
	return "not readable by this user; check as the agent's: sudo -u plantedge plantedge validate"
}

// checkMachine warns about what the file names on this machine that the
// agent could not use: certificate and CA files it cannot read (it would
// give up on the source), a data_dir it cannot write, a key file others
// may read. Checked as the user validate runs as.
func (o *validateOptions) checkMachine(cfg *config.Config, errw io.Writer) {
	warn := func(path, msg string) {
		p := cfg.Position(path)
		fmt.Fprintf(errw, "warning: %s:%d:%d: %s: %s\n", o.config, p.Line, p.Column, path, msg)
	}
	readable := func(path, file, what string) {
		if file == "" {
			return
		}
		f, err := os.Open(file)
		if err == nil {
			f.Close()
			return
		}
		msg := fmt.Sprintf("%v: %s", err, what)
		if errors.Is(err, os.ErrPermission) {
			msg += " (" + notReadableHint(file) + ")"
		}
		warn(path, msg)
	}
	for i, s := range cfg.OPCUA {
		p := fmt.Sprintf("opcua[%d]", i)
		what := "the agent would give up on OPC UA server " + s.Name
		readable(p+".cert_file", s.CertFile, what)
		readable(p+".key_file", s.KeyFile, what)
	}
	// certs also checks that a CA file holds a certificate (the mosquitto
	// probe: a private key given as ca_file passed as OK).
	certs := func(path, file, what string) {
		if file == "" {
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			readable(path, file, what)
			return
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			warn(path, fmt.Sprintf("%s holds no PEM certificate (BEGIN CERTIFICATE): %s", file, what))
		}
	}
	for i, b := range cfg.MQTT {
		p := fmt.Sprintf("mqtt[%d]", i)
		what := "the agent would give up on MQTT broker " + b.Name
		certs(p+".ca_file", b.CAFile, what)
		readable(p+".cert_file", b.CertFile, what)
		readable(p+".key_file", b.KeyFile, what)
	}
	certs("odoo.ca_file", cfg.Odoo.CAFile, "the agent could not reach Odoo")
	// Who would do what a warning below says: the agent's user, when this
	// one is not it.
	asAgent := func(hint string) string {
		if asServiceUser() {
			return hint
		}
		return "check as the agent's: sudo -u plantedge plantedge validate; if it says so too, " + hint
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && !fi.IsDir() {
		warn("data_dir", fmt.Sprintf("%s is not a directory: the agent could not keep its buffer there", cfg.DataDir))
	} else if errors.Is(err, os.ErrPermission) {
		// A directory above it that does not let this user through: it
		// was said OK, and the agent stopped at its start (mkdir:
		// permission denied, exit 78).
		shut := filepath.Dir(cfg.DataDir)
		for up := shut; ; up = filepath.Dir(up) {
			if _, err := os.Stat(up); err == nil && unix.Access(up, unix.X_OK) != nil {
				shut = up
			}
			if up == filepath.Dir(up) {
				break
			}
		}
		cause := err
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			cause = pe.Err
		}
		warn("data_dir", fmt.Sprintf("%s cannot be reached by this user: %s does not let it through (%v): the agent could not keep its buffer there (%s)",
			cfg.DataDir, shut, cause, asAgent("let the agent's user through it (chmod o+x "+shut+", or a group of that user's), or give data_dir a directory it can reach, e.g. /var/lib/plantedge")))
	} else if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// The agent creates it at its start: the nearest part of the path
		// that exists must be a directory it may write in.
		up := nearestExisting(cfg.DataDir)
		if fi, err := os.Stat(up); err == nil && !fi.IsDir() {
			warn("data_dir", fmt.Sprintf("%s cannot be created: %s is a file, not a directory", cfg.DataDir, up))
		} else if err == nil {
			// Allowed is not possible: /proc or a read-only mount refuse
			// what access(2) lets through. Try, and take the try back.
			cause := unix.Access(up, unix.W_OK)
			if cause == nil {
				if tmp, err := os.MkdirTemp(up, ".plantedge-validate-"); err != nil {
					cause = errors.Unwrap(err)
				} else {
					_ = os.Remove(tmp)
				}
			}
			if msg := cannotCreate(cfg.DataDir, up, cause, underSystemd()); msg != "" {
				warn("data_dir", msg)
			}
		}
	}
	if cfg.DataDir != "" && !filepath.IsAbs(cfg.DataDir) {
		wd, _ := os.Getwd()
		warn("data_dir", fmt.Sprintf("%s is relative: it is taken from the directory the agent starts in (%s for this command; / for the packaged unit), so each way of starting it keeps another buffer: write an absolute path", cfg.DataDir, wd))
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.IsDir() {
		switch writable := unix.Access(cfg.DataDir, unix.W_OK); {
		case errors.Is(writable, unix.EROFS) && !underSystemd():
			// Read-only for root too: the drop-in it named cannot help outside
			// systemd. Said as run says it at its start.
			warn("data_dir", onReadOnlyFileSystem(cfg.DataDir, cfg.DataDir))
		case errors.Is(writable, unix.EROFS):
			// No chown helps there (the README audit: a read-only mount was
			// warned of as "not writable by this user" with a chown hint). Said
			// as run says it at its start, the unit's sandbox included.
			hint := "remount it read-write"
			if filepath.Clean(cfg.DataDir) != "/var/lib/plantedge" {
				hint = fmt.Sprintf("under systemd, a path outside /var/lib/plantedge and /run/plantedge needs a drop-in "+
					"(systemctl edit plantedge: [Service] ReadWritePaths=%s)", cfg.DataDir)
			}
			warn("data_dir", fmt.Sprintf("%s is on a file system that is read-only for this user: the agent could not keep its buffer there "+
				"(%s; or the kernel remounted it read-only after a disk error: dmesg says)", cfg.DataDir, hint))
		case writable != nil:
			hint := "chown -R plantedge:plantedge " + cfg.DataDir + " (the package makes it so)"
			if filepath.Clean(cfg.DataDir) != "/var/lib/plantedge" {
				hint = fmt.Sprintf("chown it to plantedge; the packaged unit lets the agent write only /var/lib/plantedge: "+
					"for this data_dir, add ReadWritePaths=%s with systemctl edit plantedge", cfg.DataDir)
			}
			warn("data_dir", fmt.Sprintf("%s is not writable by this user: the agent could not keep its buffer there (%s)", cfg.DataDir, asAgent(hint)))
		case unix.Access(cfg.DataDir, unix.X_OK) != nil:
			// Writable, and no file in it can be opened (a chmod -R 600): it
			// was said OK, and the agent stopped at its start.
			warn("data_dir", fmt.Sprintf("%s is writable but not searchable by this user (mode %04o, no x): no file in it can be opened, so the agent could not keep its buffer there (%s)",
				cfg.DataDir, fi.Mode().Perm(), asAgent("chmod 750 "+cfg.DataDir+", as the package makes it")))
		default:
			bfi, berr := os.Stat(cfg.BufferPath())
			if berr != nil || !bfi.Mode().IsRegular() || unix.Access(cfg.BufferPath(), unix.R_OK|unix.W_OK) == nil {
				break
			}
			// A buffer file this user may not open for writing (root's after
			// a command or the agent run as root, one made read-only): it was
			// said OK, and the agent stopped at its start. As run says it.
			hint := fmt.Sprintf("chown plantedge:plantedge %s (root's after running plantedge as root?)", cfg.BufferPath())
			if ownedByMe(bfi) {
				hint = "chmod 600 " + cfg.BufferPath()
			}
			warn("data_dir", fmt.Sprintf("the buffer file %s is %s's (mode %04o), and this user may not read and write it: the agent could not open it (%s)",
				cfg.BufferPath(), ownerOf(bfi), bfi.Mode().Perm(), asAgent(hint)))
		}
	}
	if why := agent.VolatileDataDir(cfg, asServiceUser()); why != "" {
		warn("data_dir", fmt.Sprintf("%s %s: put it on a disk (the package's is /var/lib/plantedge)", cfg.DataDir, why))
	}
	// As run warns (the disk probe: validate said OK for 64 MiB on a 4 MiB
	// disk).
	if free, over := agent.QuotaOverDisk(cfg); over {
		warn("buffer.max_bytes", fmt.Sprintf("%s is larger than the free space of data_dir %s (%s): a long outage could fill the disk before the quota acts; lower max_bytes or free space",
			cfg.Buffer.MaxBytes, cfg.DataDir, human(int64(free))))
	}
	// The agent binds it at its start and exits if it cannot (the README
	// audit: validate said OK, and the unit restarted the agent every 5 s).
	// The packaged unit makes /run/plantedge as the service starts.
	if sock, ok := strings.CutPrefix(cfg.Listen, "unix:"); ok && filepath.IsAbs(sock) {
		if dir := filepath.Dir(sock); dir != "/run/plantedge" {
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				warn("listen", fmt.Sprintf("the directory of the socket, %s, does not exist: the agent cannot listen there, and stops at its start "+
					"(create it for the plantedge user, or use unix:/run/plantedge/api.sock, which the packaged unit makes)", dir))
			} else if err == nil && errors.Is(unix.Access(dir, unix.W_OK), unix.EROFS) && !underSystemd() {
				// As run says it (a drop-in cannot help outside the unit's sandbox).
				warn("listen", fmt.Sprintf("the directory of the socket, %s, is on a file system that is read-only: the agent cannot listen there, and stops at its start (%s)",
					dir, moveSocketHint(dir)))
			}
		}
	}
	if cfg.Odoo.APIKeyFile != "" && strings.ContainsRune(cfg.Odoo.APIKeyFile, '/') {
		if fi, err := os.Stat(cfg.Odoo.APIKeyFile); err == nil && fi.IsDir() {
			warn("odoo.api_key_file", fmt.Sprintf("%s is a directory, not the file holding the key", cfg.Odoo.APIKeyFile))
		} else if err == nil && worldReadable(cfg.Odoo.APIKeyFile, fi) {
			warn("odoo.api_key_file", fmt.Sprintf("%s is readable by every user on this machine (mode %04o): anyone logged in can use the bot's key "+
				"(chmod 600 it; the unit hands it to the agent as a credential)", cfg.Odoo.APIKeyFile, fi.Mode().Perm()))
		}
	}
	// The sources' secrets, likewise (the security probe: a 0644 OPC UA
	// private key passed without a word).
	private := func(path, file, what string) {
		if fi, err := os.Stat(file); file != "" && err == nil && !fi.IsDir() && worldReadable(file, fi) {
			warn(path, fmt.Sprintf("%s is readable by every user on this machine (mode %04o): anyone logged in can use %s "+
				"(chmod 640 it, group plantedge)", file, fi.Mode().Perm(), what))
		}
	}
	for i, s := range cfg.OPCUA {
		private(fmt.Sprintf("opcua[%d].password_file", i), s.PasswordFile, "the password for OPC UA server "+s.Name)
		private(fmt.Sprintf("opcua[%d].key_file", i), s.KeyFile, "the agent's private key for OPC UA server "+s.Name)
	}
	for i, b := range cfg.MQTT {
		private(fmt.Sprintf("mqtt[%d].password_file", i), b.PasswordFile, "the password for MQTT broker "+b.Name)
		private(fmt.Sprintf("mqtt[%d].key_file", i), b.KeyFile, "the agent's private key for MQTT broker "+b.Name)
	}
}

// checkCertDates says each certificate file cfg names that has expired
// (a problem: the peer refuses it, or the agent refuses the peer it
// verifies) and each that expires within agent.CertExpiryWarning (a
// warning), with the key path that names it; it returns how many have
// expired. A CA bundle counts by its latest-expiring certificate
// (agent.EndingCert: an old root left in it verifies nothing, and is no
// problem). A file that cannot be read is checkMachine's.
func (o *validateOptions) checkCertDates(cfg *config.Config, errw io.Writer, now time.Time) (expired int) {
	for _, f := range agent.CertFiles(cfg) {
		c, err := agent.EndingCert(f)
		if err != nil {
			continue
		}
		pos := cfg.Position(f.Path)
		st := f.Status(c, now)
		p := config.Problem{File: o.config, Line: pos.Line, Column: pos.Column, Path: f.Path, Hint: st.Todo()}
		switch {
		case st.Expired:
			expired++
			p.Msg = fmt.Sprintf("%s expired on %s", st.What(), st.NotAfter.Format(connectors.CertDateLayout))
			fmt.Fprintln(errw, p.String())
		case st.ExpiresSoon:
			p.Msg = fmt.Sprintf("%s expires on %s, in %s", st.What(), st.NotAfter.Format(connectors.CertDateLayout), agent.ExpiresIn(st.NotAfter.Sub(now)))
			fmt.Fprintln(errw, "warning: "+p.String())
		}
	}
	return expired
}

// worldReadable reports whether every user may read file (fi its stat):
// its mode lets others read it and every directory above it lets them
// through. A 0644 key in a 0750 directory is not (the technician probe: the
// warning said "every user" of a key nobody else could read).
func worldReadable(file string, fi os.FileInfo) bool {
	if fi.Mode().Perm()&0o004 == 0 {
		return false
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return true
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o001 == 0 {
			return false
		}
		if dir == filepath.Dir(dir) {
			return true
		}
	}
}

// printSummary says what the file configures: site, machines, and how many
// signals each source feeds.
// checked: what is checked next (--odoo, ...), which the file's OK is not
// about (the spec audit: "OK", then Odoo's problems, exit 1).
func printSummary(w io.Writer, cfg *config.Config, warnings int, checked string) {
	type count struct{ signals, addrs int }
	perSource := map[string]*count{}
	addrs := map[string]bool{}
	total := 0
	for i := range cfg.Machines {
		for _, r := range cfg.Machines[i].Refs() {
			var src, addr string
			switch {
			case r.Ref.OPCUA != nil:
				src, addr = r.Ref.OPCUA.Server, r.Ref.OPCUA.Address()
			case r.Ref.MQTT != nil:
				src, addr = r.Ref.MQTT.Broker, r.Ref.MQTT.Topic
			}
			c := perSource[src]
			if c == nil {
				c = &count{}
				perSource[src] = c
			}
			c.signals++
			total++
			if !addrs[src+"\x00"+addr] {
				addrs[src+"\x00"+addr] = true
				c.addrs++
			}
		}
	}
	next := ""
	if checked != "" {
		next = " — the file; " + checked + " checked below"
	}
	if warnings > 0 {
		// A big plant's file may give a hundred (the scale probe: 150 for
		// machines sharing work centers): the count says to scroll back.
		fmt.Fprintf(w, "%s: OK, with %s (above, on stderr)%s\n", cfg.Path, plural(warnings, "warning"), next)
	} else {
		fmt.Fprintf(w, "%s: OK%s\n", cfg.Path, next)
	}
	fmt.Fprintf(w, "site %s: %s, %s\n", cfg.Site, plural(len(cfg.Machines), "machine"), plural(total, "signal"))
	for _, s := range cfg.OPCUA {
		c := perSource[s.Name]
		if c == nil {
			c = &count{}
		}
		fmt.Fprintf(w, "  opcua %s (%s): %s from %s\n", s.Name, s.Endpoint, plural(c.signals, "signal"), plural(c.addrs, "node"))
	}
	for _, b := range cfg.MQTT {
		c := perSource[b.Name]
		if c == nil {
			c = &count{}
		}
		fmt.Fprintf(w, "  mqtt %s (%s): %s from %s\n", b.Name, b.URL, plural(c.signals, "signal"), plural(c.addrs, "topic"))
	}
}

func plural(n int, word string) string { return agent.Plural(n, word) }

// printSnippet shows the offending source line with a caret under the
// column; the values of the keys at the columns in mask are hidden.
func printSnippet(w io.Writer, lines []string, line, col int, mask []int) {
	if line < 1 || line > len(lines) || col < 1 {
		return
	}
	text := lines[line-1] // config.Text's: no CR left
	// From the right, so that a hidden value does not move the keys
	// before it.
	mask = slices.Sorted(slices.Values(mask))
	for i := len(mask) - 1; i >= 0; i-- {
		text = maskValueAt(text, mask[i])
	}
	text = maskSecrets(text)
	if strings.HasPrefix(strings.TrimSpace(text), "#") {
		return // a key the file lacks, placed at its start: its comment tells nothing
	}
	if strings.ContainsFunc(text, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return // binary: not for the terminal
	}
	if r := []rune(text); len(r) > snippetWidth {
		// A long line (a file written on one line): the part around the
		// column.
		from := max(0, min(col-1-snippetWidth/2, len(r)-snippetWidth))
		text = string(r[from : from+snippetWidth])
		if from > 0 {
			text, col = "…"+text, col-from+1
		}
		if from+snippetWidth < len(r) {
			text += "…"
		}
	}
	var pad strings.Builder
	for i, r := range []rune(text) {
		if i >= col-1 {
			break
		}
		if r == '\t' {
			pad.WriteRune('\t')
		} else {
			pad.WriteRune(' ')
		}
	}
	fmt.Fprintf(w, "%5d | %s\n      | %s^\n", line, text, pad.String())
}

// snippetWidth is the most of a source line a snippet shows.
const snippetWidth = 160

// maskValueAt hides the value of the key that starts at column col (1-based,
// in runes) of line: up to the next , or } in a flow mapping ({ a: 1, b: 2 }),
// else to the end of the line.
func maskValueAt(line string, col int) string {
	r := []rune(line)
	if col > len(r) {
		return line
	}
	rest := string(r[col-1:])
	i := strings.IndexRune(rest, ':')
	if i < 0 {
		return line
	}
	head, value := string(r[:col-1])+rest[:i+1], rest[i+1:]
	if strings.TrimSpace(value) == "" {
		return line
	}
	tail := ""
	if strings.Contains(head, "{") {
		from := 0
		if v := strings.TrimLeft(value, " \t"); v != "" && (v[0] == '"' || v[0] == '\'') {
			// Quoted: the , or } after the closing quote.
			open := len(value) - len(v)
			if k := strings.IndexByte(value[open+1:], v[0]); k >= 0 {
				from = open + 1 + k + 1
			} else {
				from = len(value)
			}
		}
		if j := strings.IndexAny(value[from:], ",}"); j >= 0 {
			j += from
			tail = value[j:]
			if tail[0] == '}' {
				tail = " " + tail
			}
		}
	}
	return head + " ****" + tail
}

// secretWords are the parts of a key's name that make it a secret's.
const secretWords = `key|pass|secret|token|pwd|pw|cred|auth`

var (
	urlCredentials = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:)\S*@`) // to the last @: a password may hold / and @
	// A URL written without its scheme (url: admin:pw@erp.example.com):
	// user:password@ at the start of a value; not scheme:// (no slash
	// right after the colon), nor a key (a space after its colon).
	schemelessCredentials = regexp.MustCompile(`(^|[\s"'{,\[])([^\s"'/@:{},\[\]#]+:)(?:[^\s"'/][^\s"']*)?@`) // to the last @ of the value
	secretValue           = regexp.MustCompile(`(?i)(["']?([a-z0-9_.-]*(?:` + secretWords + `)[a-z0-9_.-]*)["']?\s*:\s*)("[^"]*"?|'[^']*'?|[^\s,}#][^,}#]*)`)
	secretName            = regexp.MustCompile(`(?i)` + secretWords)
)

// plainTypo reports whether an unknown key's problem is of a key misspelt
// from a known one, neither named like a secret (sit: for site:).
func plainTypo(p config.Problem) bool {
	key := p.Path[strings.LastIndexAny(p.Path, ".]")+1:]
	return p.Meant != "" && !secretName.MatchString(p.Meant) && !secretName.MatchString(key)
}

// maskSecrets hides what looks like a secret on a source line validate
// prints (its output goes to the journal through ExecStartPre): the
// password of a URL, and the value of a key named like a key, password,
// secret or token, unless it is a file path (key_file: /etc/...).
func maskSecrets(line string) string {
	line = urlCredentials.ReplaceAllString(line, "${1}****@")
	line = schemelessCredentials.ReplaceAllString(line, "${1}${2}****@")
	return secretValue.ReplaceAllStringFunc(line, func(m string) string {
		sub := secretValue.FindStringSubmatch(m)
		if strings.ToLower(sub[2]) == "auth_backoff" {
			return m // forward.auth_backoff: a duration, named like a secret
		}
		if name := strings.ToLower(sub[2]); (strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "-file")) &&
			config.SecretPathShown(strings.Trim(strings.TrimSpace(sub[3]), `"'`)) == strings.Trim(strings.TrimSpace(sub[3]), `"'`) {
			return m // a path; anything else may be the secret pasted in
		}
		return sub[1] + "****"
	})
}

// warnCounter passes what validate writes to stderr on, counting the
// warning lines.
type warnCounter struct {
	w io.Writer
	n int
}

func (c *warnCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte("\nwarning: "))
	if bytes.HasPrefix(p, []byte("warning: ")) {
		c.n++
	}
	return c.w.Write(p)
}

// credentialName reports whether a secret file is written as a systemd
// credential is named (a name alone, the README's way) while this check runs
// outside the unit, which would fill $CREDENTIALS_DIRECTORY.
func credentialName(file string) bool {
	return file != "" && !strings.ContainsRune(file, '/') && os.Getenv("CREDENTIALS_DIRECTORY") == ""
}

// credentialHint says what a credential's name found nowhere here needs.
// The name is not repeated (it may be the secret, pasted).
func credentialHint(what string) string {
	return "a name alone (not shown), and no file of that name here: the agent reads it among its systemd credentials " +
		"($CREDENTIALS_DIRECTORY, not set for this check), so its unit needs LoadCredential=<that name>:<the file holding the " + what + "> " +
		"in a drop-in (systemctl edit plantedge)"
}
