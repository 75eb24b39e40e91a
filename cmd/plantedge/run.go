package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/journal"
)

type runOptions struct {
	config string
}

func (o *runOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.config, "config", "c", defaultConfig, "config file")
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent (what systemd runs): read sources, buffer durably, forward to Odoo",
		Long: "run is the agent: it reads the sources, buffers every value durably and forwards the buffer to\n" +
			"Odoo. SIGHUP reloads the configuration (site, data_dir, listen, buffer, odoo and log.format wait for a\n" +
			"restart: plantedge status names them); SIGTERM stops it cleanly.\n" +
			"It exits 0 when stopped cleanly, 78 (EX_CONFIG) for a configuration it refuses, a data_dir or\n" +
			"socket directory its user may not write, or root on a data_dir another user owns (the packaged\n" +
			"unit does not restart after it: fix it, then\n" +
			"systemctl restart plantedge), and 1 on other failures (a listen port another program holds, say).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.Run(cmd.Context()) },
	}
	o.AddFlags(cmd)
	return cmd
}

// newLogger builds the agent's logger from the config's log section,
// writing to stderr; when that is the journal's stream (under systemd),
// lines carry their priority and no time of their own.
func newLogger(c *config.Config) (*slog.Logger, *slog.LevelVar) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	lv := new(slog.LevelVar) // a reload sets it (log.level)
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	inner := func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }
	if c.Log.Format == "json" {
		inner = func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }
	}
	if journal.Attached(os.Stderr) {
		return slog.New(journal.NewHandler(os.Stderr, opts, inner)), lv
	}
	return slog.New(inner(os.Stderr, opts)), lv
}

// defaultMemoryLimit is the Go runtime's soft memory limit for the agent
// when GOMEMLIMIT is not set: the garbage collector works harder as the heap
// nears it, so a box with many PLCs stays within the 64 MB the agent aims at.
// The limit counts the Go runtime's memory only; the file pages of the
// binary and of the buffer file's mapping (19-29 MB at the many-PLCs
// benchmark's peak) come on top. At 48 MiB the anonymous memory of 50
// sessions peaked at 37-43 MiB and the RSS at 67-71 MB after 40 s of
// ingest; at 40 MiB 33-36 MiB and 61-63 MB, for about 4% of a core more
// of the collector's work (the live heap there is 15-22 MB, so the
// collector still has about as much again to grow into).
const defaultMemoryLimit = 40 << 20

// exitSetup is the exit status of `plantedge run` for a failure that
// starting again cannot mend: a configuration it refuses, a data_dir its
// user may not write. It is sysexits' EX_CONFIG, which the unit's
// RestartPreventExitStatus= names: systemd then leaves the service failed
// (status=78/CONFIG) instead of starting it every RestartSec= for good.
const exitSetup = 78

func (o *runOptions) Run(ctx context.Context) error {
	// First of all: SIGHUP's default action ends the process, and systemd
	// (ExecReload) or a tool may send one as the agent starts. One that
	// comes before the agent runs is applied once it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(o.config)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, fs.ErrPermission) {
			msg += fmt.Sprintf(" (user %s may not read it: the package makes it root:plantedge 0640 for the plantedge user, which the unit runs as)", currentUser())
		}
		return &exitError{code: exitSetup, msg: msg, cause: err}
	}
	if err := checkOwner(cfg.DataDir); err != nil {
		return err
	}
	log, level := newLogger(cfg)
	if os.Getenv("GOMEMLIMIT") == "" {
		// Measured: the garbage collector's headroom is most of what each
		// OPC UA session adds (100 sessions: peak RSS 78 MB by default, 57-59
		// MB at 48 MiB, same throughput). The agent's live heap stays far
		// below it; GOMEMLIMIT in the environment overrides it.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ver, _ := buildInfo()
	a, err := agent.New(cfg, agent.Options{Logger: log, LogLevel: level, Version: ver})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				// A second SIGTERM or Ctrl-C ends the process at once, as
				// a kill would: what was acknowledged is durable already.
				stop()
				return
			case <-hup:
				_ = a.Reload(ctx, o.config) // logged by Reload
			}
		}
	}()
	return runExit(a.Run(ctx), cfg, o.config)
}

// runExit is the exit for run's error: exitSetup for what no restart
// mends, with what to do; err as it is for the rest (1, which systemd's
// Restart=on-failure restarts).
func runExit(err error, cfg *config.Config, path string) error {
	var se *agent.StartError
	switch {
	case errors.As(err, &se) && errors.Is(err, buffer.ErrNewerFormat):
		// No restart reads it: the unit stays failed with the message
		// (it restarted every 5 s for good: the upgrade probe).
		return &exitError{code: exitSetup, cause: err, msg: err.Error()}
	case errors.As(err, &se) && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)):
		return &exitError{code: exitSetup, cause: err, msg: fmt.Sprintf("%v\n%s", err, startHint(err, cfg, path))}
	case errors.As(err, &se) && errors.Is(err, syscall.EADDRINUSE):
		// Exit 1 as before (the other program may go, and the unit
		// restarts), with what to do (the operator probe: "bind: address
		// already in use" alone).
		return fmt.Errorf("%w\n%s", err, addrInUseHint(cfg, path))
	case errors.As(err, &se) && strings.HasPrefix(err.Error(), "listen unix:") && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
		// The agent makes no directory for its socket: no restart makes
		// one either (it restarted every 5 s for good: the conformance
		// audit).
		sock, _ := strings.CutPrefix(cfg.Listen, "unix:")
		return &exitError{code: exitSetup, cause: err, msg: fmt.Sprintf("%v\nthe directory of listen's socket, %s, does not exist (or a part of its path is a file): "+
			"create it for the user the agent runs as, or use unix:/run/plantedge/api.sock, which the packaged unit makes", err, filepath.Dir(sock))}
	case errors.As(err, &se) && (strings.HasPrefix(err.Error(), "data dir: ") || strings.HasPrefix(err.Error(), "open buffer: ")) &&
		(errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
		// A directory that cannot be made where data_dir says (below a
		// file, under /proc), or one that takes no file (/proc/1): no
		// restart changes that.
		return &exitError{code: exitSetup, cause: err, msg: fmt.Sprintf("%v\ndata_dir %s cannot be created there, or holds no file of ours (a part of the path is a file, "+
			"or a file system such as /proc): give data_dir a directory on a disk, e.g. /var/lib/plantedge", err, cfg.DataDir)}
	}
	return err
}

// moveSocketHint is what to do about listen's socket directory dir on a
// file system that is read-only (outside systemd): run and validate say it
// alike.
func moveSocketHint(dir string) string {
	return fmt.Sprintf("give listen a socket in a directory on a file system mounted read-write, or an address such as 127.0.0.1:9464; "+
		"or remount that one read-write: findmnt -T %s names it", dir)
}

// addrInUseHint says what to do about a listen address another process
// holds: find it, then stop it or move listen (status and flush read the
// same file, so they follow).
func addrInUseHint(cfg *config.Config, path string) string {
	find := "ss -lx | grep " + strings.TrimPrefix(cfg.Listen, "unix:")
	if !strings.HasPrefix(cfg.Listen, "unix:") {
		_, port, _ := net.SplitHostPort(cfg.Listen)
		find = fmt.Sprintf("sudo ss -ltnp 'sport = :%s'", port)
	}
	return fmt.Sprintf("another program listens on %s (another plantedge, one run by hand beside the service?): %s names it; "+
		"stop it, or give listen in %s another address (status and flush read it from there too)", cfg.Listen, find, path)
}

// startHint says what to do about a start that failed for permissions or
// a read-only file system.
func startHint(err error, cfg *config.Config, path string) string {
	where, dir := "data_dir", cfg.DataDir
	if strings.HasPrefix(err.Error(), "listen ") {
		sock, unix := strings.CutPrefix(cfg.Listen, "unix:")
		if !unix {
			return fmt.Sprintf("user %s may not listen on %s: a port below 1024 takes a privilege the agent does not have; "+
				"use one of 1024 or more (the default is 9464)", currentUser(), cfg.Listen)
		}
		where, dir = "the directory of listen's socket", filepath.Dir(sock)
	}
	dropIn := fmt.Sprintf("under systemd, a path outside /var/lib/plantedge and /run/plantedge needs a drop-in "+
		"(systemctl edit plantedge: [Service] ReadWritePaths=%s)", dir)
	me := currentUser()
	switch {
	case errors.Is(err, syscall.EROFS) && where == "data_dir" && !underSystemd():
		// Not the unit's sandbox: read-only for root too, so no mkdir,
		// chown or drop-in mends it (it said to make it and chown it, or
		// the drop-in for one there). Said as validate says it.
		at := dir
		if !exists(dir) {
			at = nearestExisting(dir)
		}
		return "data_dir " + onReadOnlyFileSystem(dir, at)
	case errors.Is(err, syscall.EROFS) && !underSystemd():
		// The socket's directory on a read-only mount, not the unit's
		// sandbox: no drop-in mends that (it named one).
		return fmt.Sprintf("the directory of listen's socket, %s, is on a file system that is read-only (%v): the agent could not make its socket there (%s)",
			dir, syscall.EROFS, moveSocketHint(dir))
	case errors.Is(err, syscall.EROFS) && where == "data_dir" && !exists(dir):
		// The unit's sandbox (ProtectSystem=strict) refuses mkdir so: the
		// drop-in alone would not start it (systemd refuses a path there
		// that does not exist).
		return fmt.Sprintf("data_dir %s does not exist, and the file system that would hold it is read-only for the agent: %s; "+
			"or the kernel remounted it read-only after a disk error (dmesg says)", dir, makeDirHint(dir, me))
	case errors.Is(err, syscall.EROFS):
		return fmt.Sprintf("the file system holding %s (%s) is read-only for the agent: %s; or the kernel remounted it read-only after a disk error (dmesg says)",
			where, dir, dropIn)
	case me != "plantedge" && (dir == "/var/lib/plantedge" || dir == "/run/plantedge"):
		return fmt.Sprintf("%s is the plantedge user's (the package and the unit make it so), and this runs as %s: start the service "+
			"(systemctl start plantedge) or run the agent as that user (sudo -u plantedge plantedge run -c %s)", dir, me, path)
	default:
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) && where == "data_dir" {
			// chown alone cannot be followed (the technician probe).
			return fmt.Sprintf("user %s may not create %s %s: %s", me, where, dir, makeDirHint(dir, me))
		} else if errors.Is(serr, fs.ErrNotExist) {
			return fmt.Sprintf("user %s may not create %s %s: mkdir -p %s && chown -R %s %s; %s", me, where, dir, dir, me, dir, dropIn)
		}
		if fi, err := os.Stat(cfg.BufferPath()); where == "data_dir" && err == nil && fi.Mode().Perm()&0o200 == 0 && ownedByMe(fi) {
			// Its own file, made read-only: a chown changes nothing (the
			// disk probe).
			return fmt.Sprintf("the buffer file %s is user %s's but read-only (mode %04o): chmod 600 %s", cfg.BufferPath(), me, fi.Mode().Perm(), cfg.BufferPath())
		}
		return fmt.Sprintf("user %s may not write in %s %s (or a file in it is another user's, root's after running the agent as root?): "+
			"chown -R %s %s; %s", me, where, dir, me, dir, dropIn)
	}
}

// makeDirHint says how data_dir dir, which does not exist and which the
// agent's user may not create, is made for owner: by root, and outside the
// packaged unit's own directories named in a drop-in as well, once it is
// made — systemd does not start a unit whose ReadWritePaths= names a path
// that is not there. validate and run say it alike: the unit's journal
// shows both (validate runs before each start).
func makeDirHint(dir, owner string) string {
	if filepath.Clean(dir) == "/var/lib/plantedge" {
		return "the packaged unit makes it for the plantedge user as it starts (StateDirectory=plantedge): start the service (systemctl start plantedge)"
	}
	if owner == "plantedge" {
		owner = "plantedge:plantedge"
	}
	return fmt.Sprintf("mkdir -p %s && chown -R %s %s; under systemd, a path outside /var/lib/plantedge and /run/plantedge then needs a drop-in "+
		"(systemctl edit plantedge: [Service] ReadWritePaths=%s)", dir, owner, dir, dir)
}

// exists reports whether path is there (a part of it a file, or a
// permission that hides it, is taken as there: no mkdir mends those).
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// ownedByMe reports whether fi is this process's user's.
func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// ownerOf names fi's owner (its uid if unknown).
func ownerOf(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "another user"
	}
	return userName(strconv.FormatUint(uint64(st.Uid), 10))
}

// currentUser names the user this process runs as (its uid if unknown).
func currentUser() string {
	return userName(strconv.Itoa(os.Geteuid()))
}

// userName names the user of uid (uid itself if unknown).
func userName(uid string) string {
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

// checkOwner refuses to run as root on a data_dir another user owns (the
// service's): root would leave files there — a new buffer file after a
// corrupt one, a shrink's copy, a certificate — that the service then
// cannot open. Exit 78, as for a data_dir its user may not write: no
// restart mends it (a unit whose User= was edited out restarted every 5 s
// for good with exit 1).
func checkOwner(dataDir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return nil // made by the agent
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	return &exitError{code: exitSetup, msg: fmt.Sprintf("refusing to run as root: data_dir %s belongs to %s, and root would leave files there that the service cannot use; "+
		"start the service (sudo systemctl start plantedge), or run as its user (sudo -u %s plantedge run)", dataDir, owner, owner)}
}
