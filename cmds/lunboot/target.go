package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Environment variables that carry CHAP secrets, so they stay out of the
// process list (`ps` shows every command-line argument to every user).
const (
	envCHAPSecret   = "LUNBOOT_CHAP_SECRET"
	envTargetSecret = "LUNBOOT_TARGET_SECRET"
)

// initiatorPrefix is the naming authority of generated initiator names
// (RFC 7143 §4.2.7.4: iqn.<yyyy-mm>.<reversed domain>).
const initiatorPrefix = "iqn.2026-11.org.lunboot:"

// targetHelp is appended to the usage of every command that takes a target.
const targetHelp = `
A target is written as
  iscsi:<server>:<proto>:<port>:<LUN hex>:<target name>   (RFC 4173 root-path,
        the LUN in hex, e.g. iscsi:192.0.2.1::3260:1:iqn.2004-01.com.example:disk)
  iscsi://[<user>[%<password>]@]<host>[:<port>]/<target name>/<LUN decimal>
        (libiscsi URL; a password there is visible in ps: prefer the options)

CHAP secrets are read from --chap-secret-file / $LUNBOOT_CHAP_SECRET and
--target-secret-file / $LUNBOOT_TARGET_SECRET (mutual CHAP). The default
initiator name is the InitiatorName in /etc/iscsi/initiatorname.iscsi (so ACLs
written for open-iscsi apply), else iqn.2026-11.org.lunboot:<host name>, else
one derived from /etc/machine-id.
`

// targetFlags are the options every command that logs in to a target
// shares: who we are, how we authenticate, how the session runs.
type targetFlags struct {
	fs               *flag.FlagSet
	initiator        string
	chapUser         string
	chapSecretFile   string
	chapSecret       string
	targetUser       string
	targetSecretFile string
	headerDigest     bool
	dataDigest       bool
	timeout          time.Duration
	verbose          bool
	// lunOptional lets a URL without its /<lun> through (luns lists them all).
	lunOptional bool
	// shown is the target as the user wrote it with any password masked,
	// set by config: the form messages quote.
	shown string
	log   *slog.Logger
}

// addTargetFlags registers the shared target options on fs.
func addTargetFlags(fs *flag.FlagSet) *targetFlags {
	f := &targetFlags{fs: fs}
	fs.StringVar(&f.initiator, "initiator", "", "initiator `IQN` (default: see below)")
	fs.StringVar(&f.chapUser, "chap-user", "", "CHAP user name the initiator authenticates with")
	fs.StringVar(&f.chapSecretFile, "chap-secret-file", "", "read the CHAP secret from `file` (default $"+envCHAPSecret+")")
	fs.StringVar(&f.chapSecret, "chap-secret", "", "CHAP `secret` (visible in ps: prefer --chap-secret-file)")
	fs.StringVar(&f.targetUser, "target-user", "", "mutual CHAP: the user name the target must authenticate with")
	fs.StringVar(&f.targetSecretFile, "target-secret-file", "", "mutual CHAP: read the target's secret from `file` (default $"+envTargetSecret+")")
	fs.BoolVar(&f.headerDigest, "header-digest", false, "offer CRC32C header digests")
	fs.BoolVar(&f.dataDigest, "data-digest", false, "offer CRC32C data digests")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound for the login and for each SCSI command")
	fs.BoolVar(&f.verbose, "v", false, "log protocol and SCSI events to stderr")
	return f
}

// logger returns the command's logger: warnings on stderr, everything
// with -v.
func (f *targetFlags) logger() *slog.Logger {
	if f.log == nil {
		level := slog.LevelWarn
		if f.verbose {
			level = slog.LevelDebug
		}
		f.log = slog.New(slog.NewTextHandler(f.fs.Output(), &slog.HandlerOptions{Level: level}))
	}
	return f.log
}

// base builds the session configuration that does not depend on a target:
// initiator name, CHAP, digests, timeouts, logger. user and secret from the
// target string (a URL's user%password) are used unless options override.
func (f *targetFlags) base(user, secret, targetUser, targetSecret string) (iscsi.Config, error) {
	if f.timeout <= 0 {
		return iscsi.Config{}, fmt.Errorf("%w: --timeout %v: must be positive (it bounds the login and every SCSI command)", errUsage, f.timeout)
	}
	cfg := iscsi.Config{
		LoginTimeout: f.timeout,
		Logger:       f.logger(),
	}
	// --header-digest and --data-digest offer CRC32C, the host tools'
	// long-standing meaning: the session runs without it if the target
	// declines.
	if f.headerDigest {
		cfg.HeaderDigest = iscsi.DigestPrefer
	}
	if f.dataDigest {
		cfg.DataDigest = iscsi.DigestPrefer
	}
	name := f.initiator
	if name == "" {
		name = defaultInitiatorName()
	}
	norm, err := rootpath.NormalizeName(name)
	if err != nil {
		return cfg, fmt.Errorf("%w: --initiator %q: %v", errUsage, name, err)
	}
	cfg.InitiatorName = norm

	if f.chapUser != "" {
		user = f.chapUser
	}
	s, err := f.secret("--chap-secret-file", f.chapSecretFile, envCHAPSecret)
	if err != nil {
		return cfg, err
	}
	if f.chapSecret != "" {
		fmt.Fprintln(f.fs.Output(), "lunboot: warning: --chap-secret is visible to every user in the process list; use --chap-secret-file or $"+envCHAPSecret)
		s = f.chapSecret
	}
	if s != "" {
		secret = s
	}
	if f.targetUser != "" {
		targetUser = f.targetUser
	}
	ts, err := f.secret("--target-secret-file", f.targetSecretFile, envTargetSecret)
	if err != nil {
		return cfg, err
	}
	if ts != "" {
		targetSecret = ts
	}
	switch {
	case user == "" && secret == "" && targetUser == "" && targetSecret == "":
		return cfg, nil
	case user == "":
		return cfg, fmt.Errorf("%w: a CHAP secret was given but no user name: add --chap-user", errUsage)
	case secret == "":
		return cfg, fmt.Errorf("%w: CHAP user %q has no secret: use --chap-secret-file or $%s", errUsage, user, envCHAPSecret)
	case targetUser != "" && targetSecret == "":
		return cfg, fmt.Errorf("%w: mutual CHAP user %q has no secret: use --target-secret-file or $%s", errUsage, targetUser, envTargetSecret)
	case targetUser == "" && targetSecret != "":
		return cfg, fmt.Errorf("%w: a mutual CHAP secret was given but no user name: add --target-user", errUsage)
	}
	cfg.CHAP = &iscsi.CHAP{Username: user, Secret: secret, TargetUsername: targetUser, TargetSecret: targetSecret}
	return cfg, nil
}

// secret reads a secret from file, else from the environment variable.
// A trailing newline (echo secret > file) is not part of it.
func (f *targetFlags) secret(flagName, file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	st, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		f.logger().Warn("secret file is readable by other users; chmod 600 it", "file", file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, file)
	}
	return s, nil
}

// config parses a target string (RFC 4173 root-path or iSCSI URL) and
// returns the session configuration for it and the LUN it names.
func (f *targetFlags) config(target string) (iscsi.Config, scsi.LUN, error) {
	rp, err := rootpath.ParseTarget(target)
	if err != nil && f.lunOptional && strings.HasPrefix(strings.ToLower(target), "iscsi://") {
		var pe *rootpath.Error
		if errors.As(err, &pe) && pe.Field == rootpath.FieldLUN {
			rp, err = rootpath.ParseTarget(strings.TrimSuffix(target, "/") + "/0")
		}
	}
	if err != nil {
		return iscsi.Config{}, scsi.LUN{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	f.shown = rp.Masked()
	for _, w := range rp.Warnings {
		f.logger().Warn("target: " + w)
	}
	cfg, err := f.base(rp.Username, rp.Password, rp.ReverseUsername, rp.ReversePassword)
	if err != nil {
		return cfg, scsi.LUN{}, err
	}
	cfg.Portal = rp.Portal()
	cfg.TargetName = rp.Target
	return cfg, rp.LUN, nil
}

// login opens a session to the target named by target and returns it with
// the LUN; errors say what to check.
func (f *targetFlags) login(ctx context.Context, target string) (*iscsi.Session, scsi.LUN, error) {
	cfg, lun, err := f.config(target)
	if err != nil {
		return nil, lun, err
	}
	s, err := f.loginTo(ctx, cfg)
	return s, lun, err
}

// loginTo opens a session with cfg, from config.
func (f *targetFlags) loginTo(ctx context.Context, cfg iscsi.Config) (*iscsi.Session, error) {
	s, err := iscsi.Login(ctx, cfg)
	if err != nil {
		// Named like every later error of the command: "<command>
		// <target>: …", the target as typed (secrets masked).
		return nil, fmt.Errorf("%s %s: %w", f.fs.Name(), f.shown, loginHint(err, cfg))
	}
	f.logger().Debug("logged in", "target", cfg.TargetName, "portal", cfg.Portal, "initiator", cfg.InitiatorName)
	return s, nil
}

// logout ends the session, bounded by the command timeout.
func (f *targetFlags) logout(s *iscsi.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := s.Logout(ctx); err != nil {
		f.logger().Warn("logout", "err", err)
		s.Close()
	}
}

// loginHint adds to a login error what to check, in terms of this
// command's options (pkg/advice).
func loginHint(err error, cfg iscsi.Config) error {
	return withHint(err, advice.Login(err, cfg, advice.Flags))
}

// withHint appends an indented hint line to err, keeping its chain.
func withHint(err error, hint string) error {
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w\n  hint: %s", err, hint)
}

// openDisk opens the block-device view of lun on s for command cmd, bounded
// by --timeout, and explains a LUN that is not there.
func (f *targetFlags) openDisk(ctx context.Context, cmd string, s *iscsi.Session, lun scsi.LUN, readOnly bool) (*scsi.Disk, error) {
	octx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	d, err := scsi.OpenDisk(octx, s, lun, scsi.DiskOptions{Logger: f.logger(), Timeout: f.timeout, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", cmd, f.shown, lunHint(ctx, s, lun, err, f.timeout))
	}
	return d, nil
}

// lunHint explains a LUN that is not there by listing the ones that are.
// Its REPORT LUNS is bounded by timeout (the command's --timeout): callers
// may hand it a context without deadline, and a hint must never turn a
// clear error into a hang against a target that stopped answering.
func lunHint(ctx context.Context, ex scsi.Executor, lun scsi.LUN, err error, timeout time.Duration) error {
	if !errors.Is(err, scsi.ErrLUNNotSupported) {
		return withHint(err, advice.OpenDisk(err, advice.Flags))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	luns, lerr := scsi.ReportLUNs(ctx, ex, scsi.LUN{})
	if lerr != nil {
		return err
	}
	return withHint(fmt.Errorf("%w; the target has %s, not %s", err, sam.FormatLUNs(luns), sam.FormatLUNs([]scsi.LUN{lun})),
		advice.OpenDisk(err, advice.Flags))
}

// defaultInitiatorName is the initiator name used without --initiator:
// open-iscsi's configured name if the host has one (its ACLs then apply),
// else one derived from the host name, else from the machine ID. Each is
// stable across runs on the same host.
func defaultInitiatorName() string {
	if n := openISCSIName("/etc/iscsi/initiatorname.iscsi"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		h = strings.ToLower(h)
		if h != "" && h != "localhost" && rootpath.CheckHostname(h) == nil {
			return initiatorPrefix + h
		}
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		sum := sha256.Sum256([]byte(strings.TrimSpace(string(b))))
		return fmt.Sprintf("%shost-%x", initiatorPrefix, sum[:6])
	}
	return initiatorPrefix + "host"
}

// openISCSIName reads InitiatorName= from open-iscsi's file, "" if absent
// or invalid.
func openISCSIName(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(io.LimitReader(fh, 64<<10))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "InitiatorName="); ok {
			if n, err := rootpath.NormalizeName(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return ""
}

// parseArgs parses fs with interspersed options (flag stops at the first
// argument; users write `lunboot read <target> --length 1M`) and returns
// the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		// The flag package prints its error, then the usage; main prints
		// the error again. Parsed silently, the usage comes first and
		// the error once, last, spelt as the usage spells options.
		out := fs.Output()
		fs.SetOutput(io.Discard)
		err := fs.Parse(args)
		fs.SetOutput(out)
		if err != nil {
			fs.Usage()
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s", errUsage, dashes(err.Error()))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagInMessage matches an option as the flag package's errors name it
// ("invalid value \"x\" for flag -depth: …", "flag needs an argument:
// -timeout", "flag provided but not defined: -x", whether -x or --x was
// typed).
var flagInMessage = regexp.MustCompile(`(flag|argument:|defined:) -([a-z][a-z0-9-]+)`)

// dashes rewrites the flag package's -name in err to --name, the spelling
// of every usage and message of lunboot (Go's flag package accepts both).
func dashes(msg string) string {
	return flagInMessage.ReplaceAllString(msg, "$1 --$2")
}

// flagName is how help text and messages spell an option: --name, or -x
// for a one-letter one (-v, -n, -o, -j), as GNU tools do.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// usageFunc prints a command's synopsis, its options and the target help.
func usageFunc(fs *flag.FlagSet, synopsis, about string, withTarget bool) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: lunboot %s\n\n%s\n\noptions:\n", synopsis, about)
		printDefaults(fs)
		if withTarget {
			fmt.Fprint(w, targetHelp)
		}
	}
}

// printDefaults is flag.PrintDefaults with options spelt as flagName
// writes them, --name rather than -name.
func printDefaults(fs *flag.FlagSet) {
	w := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		arg, help := flag.UnquoteUsage(f)
		line := "  " + flagName(f.Name)
		if arg != "" {
			line += " " + arg
		}
		// As flag.PrintDefaults: a short option and its argument share
		// the line with the help, anything longer gets its own.
		if len(line) <= 4 {
			line += "\t"
		} else {
			line += "\n    \t"
		}
		line += strings.ReplaceAll(help, "\n", "\n    \t")
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" {
			if fmt.Sprintf("%T", f.Value) == "*flag.stringValue" {
				d = strconv.Quote(d)
			}
			line += " (default " + d + ")"
		}
		fmt.Fprintln(w, line)
	})
}
