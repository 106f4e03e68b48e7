package jitd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/inputs"
	"github.com/jitgrant/jitgrant/issuer/notify"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Version is jitd's version, set at build time with
// -ldflags "-X github.com/jitgrant/jitgrant/internal/jitd.Version=v1.2.3".
var Version = "dev"

// NewCommand returns the jitd command line. Subcommands are registered
// here, in one place.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "jitd",
		Short:         "jitgrant issuer: just-in-time access grants for gRPC services on SPIFFE",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cli.Setup(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(initCommand(), serveCommand(stderr), enrollCommand(), versionCommand())
	return root
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print jitd's version",
		Args:  cli.Args(cobra.NoArgs),
		Run: func(cmd *cobra.Command, _ []string) {
			v := Version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintln(cmd.OutOrStdout(), "jitd", v)
		},
	}
}

func initCommand() *cobra.Command {
	var cfg InitConfig
	var dir, passFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a data directory: CA, audit key, a deny-all policy",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pass, err := ReadPassphrase(passFile)
			if err != nil {
				return err
			}
			if w := passphraseWarning(passFile); w != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), w)
			}
			cfg.Dir, cfg.Passphrase = DataDir(dir), pass
			if strings.Contains(cfg.KMS, "pin-value=") {
				fmt.Fprintln(cmd.ErrOrStderr(), "jitd: warning: --kms has pin-value: the token's PIN is written, in clear, to jitd.yaml's ca_key and jwt_key; "+
					"prefer pin-source=FILE (a 0600 file holding the PIN)")
			}
			if err := Init(cfg); err != nil {
				return err
			}
			d := DataDir(dir)
			fmt.Fprintf(cmd.OutOrStdout(), "initialized %s for trust domain %s\n  trust bundle:     %s\n  audit public key: %s\n  policy:           %s (denies everything; edit it)\n",
				dir, cfg.TrustDomain, d.CACert(), d.AuditPublicKey(), d.Policy())
			if cfg.KMS != "" {
				m, _, err := d.readMeta()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "  CA key:           in the PKCS#11 token, %s (ca_key in %s)\n", m.CAKey, d.path(fileMeta))
				fmt.Fprintf(cmd.OutOrStdout(), "  JWT-SVID key:     in the PKCS#11 token, %s (jwt_key in %s)\n", m.JWTKey, d.path(fileMeta))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", "", "data directory to create (required)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "", "SPIFFE trust domain, e.g. example.org (required)")
	f.StringVar(&cfg.KeyType, "key-type", "ec-p256", "CA key type: ec-p256, ec-p384 or ed25519")
	f.DurationVar(&cfg.CATTL, "ca-ttl", 365*24*time.Hour, "CA certificate validity")
	f.StringVar(&passFile, "ca-passphrase-file", "", "file holding a passphrase to encrypt the CA key with")
	f.StringVar(&cfg.KMS, "kms", "", "create the CA and JWT-SVID keys in a PKCS#11 token instead of ca.key and jwt.key: a pkcs11: URI, e.g. "+
		"'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=jitgrant?pin-source=/etc/jitd/pin'")
	cmd.MarkFlagRequired("data-dir")
	cmd.MarkFlagRequired("trust-domain")
	return cmd
}

func enrollCommand() *cobra.Command {
	var cfg EnrollConfig
	var dir, passFile string
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Issue a person's identity SVID (offline: jitd serve must not be running on the data directory)",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pass, err := ReadPassphrase(passFile)
			if err != nil {
				return err
			}
			if w := passphraseWarning(passFile); w != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), w)
			}
			cfg.Dir, cfg.Passphrase = DataDir(dir), pass
			leaf, err := Enroll(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s until %s\n  %s/{%s,%s,%s}\n", cfg.ID,
				leaf.NotAfter.UTC().Format(time.RFC3339), cfg.Out, EnrollCert, EnrollKey, EnrollBundle)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", "", "jitd data directory (required)")
	f.StringVar(&cfg.ID, "id", "", "the person's SPIFFE ID, e.g. spiffe://example.org/person/alice (required)")
	f.DurationVar(&cfg.TTL, "ttl", 8*time.Hour, "how long the identity lasts")
	f.StringVar(&cfg.Out, "out", "", "directory for svid.pem, svid.key and bundle.pem (required)")
	f.StringVar(&passFile, "ca-passphrase-file", "", "file holding the CA key's passphrase")
	for _, n := range []string{"data-dir", "id", "out"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

// fileConfig is the YAML configuration file of jitd serve. Flags given on
// the command line win over it.
type fileConfig struct {
	DataDir          string               `yaml:"data_dir"`
	Listen           string               `yaml:"listen"`
	Policy           string               `yaml:"policy"`
	MetricsListen    string               `yaml:"metrics_listen"`
	LogJSON          bool                 `yaml:"log_json"`
	MaxTTLCap        time.Duration        `yaml:"max_ttl_cap"`
	CAPassphraseFile string               `yaml:"ca_passphrase_file"`
	WorkloadSocket   string               `yaml:"workload_socket"`
	Entries          []attest.EntryConfig `yaml:"entries"`
	Webhooks         []notify.Endpoint    `yaml:"webhooks"`
	TicketCheckers   []inputs.Endpoint    `yaml:"ticket_checkers"`
	OnCall           *inputs.OnCallSource `yaml:"oncall"`
	DiskReserveMiB   int64                `yaml:"disk_reserve_mib"`
	PolicySettle     time.Duration        `yaml:"policy_settle"`
	Limits           Limits               `yaml:"limits"`
	// ExpiringLead: how long before a grant's end the expiring notice
	// goes; 0 turns it off.
	ExpiringLead time.Duration `yaml:"expiring_lead"`
}

func serveCommand(stderr io.Writer) *cobra.Command {
	var fc fileConfig
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the issuer: API over mTLS, sweeper, policy reloads, metrics",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath != "" {
				if err := mergeConfigFile(cmd, configPath, &fc); err != nil {
					return err
				}
			}
			if fc.DataDir == "" {
				return fmt.Errorf("jitd: serve: --data-dir (or data_dir in --config) is required")
			}
			var h slog.Handler = slog.NewTextHandler(stderr, nil)
			if fc.LogJSON {
				h = slog.NewJSONHandler(stderr, nil)
			}
			logger := slog.New(h)
			logger.Info("jitd: starting", "gomaxprocs", SpareProc(os.Getenv))
			pass, err := ReadPassphrase(fc.CAPassphraseFile)
			if err != nil {
				return err
			}
			if w := passphraseWarning(fc.CAPassphraseFile); w != "" {
				logger.Warn(w)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if fc.DiskReserveMiB < 0 {
				return fmt.Errorf("jitd: serve: --disk-reserve-mib %d: must not be negative", fc.DiskReserveMiB)
			}
			if fc.ExpiringLead < 0 {
				return fmt.Errorf("jitd: serve: --expiring-lead %v: must not be negative (0 turns the expiring notice off)", fc.ExpiringLead)
			}
			expiringLead := fc.ExpiringLead
			if expiringLead == 0 {
				expiringLead = -1 // off (ServeConfig's zero is the default)
			}
			sc := ServeConfig{
				Dir: DataDir(fc.DataDir), Listen: fc.Listen, PolicyPath: fc.Policy,
				MetricsListen: fc.MetricsListen, Passphrase: pass, MaxTTLCap: fc.MaxTTLCap, Logger: logger,
				WorkloadSocket: fc.WorkloadSocket, Entries: fc.Entries, Webhooks: fc.Webhooks,
				TicketCheckers: fc.TicketCheckers, OnCall: fc.OnCall,
				DiskReserve:  fc.DiskReserveMiB << 20,
				PolicySettle: fc.PolicySettle, Limits: fc.Limits, ExpiringLead: expiringLead,
			}
			s, err := Start(ctx, sc)
			if errors.Is(err, kv.ErrDiskFull) {
				// Badger can open the database neither read-write nor
				// read-only (see kv.Open): wait for space rather than exit.
				s, err = startWhenSpace(ctx, sc, logger, err)
			}
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			for {
				select {
				case <-hup:
					ev := s.ReloadPolicy()
					logger.Info("jitd: policy reload on SIGHUP", "ok", ev.OK, "sha256", ev.Hash, "removed", len(ev.Removed), "error", ev.Err)
				case <-s.Reopen():
					// Started read-only on a full disk; space is back.
					logger.Info("jitd: restarting to open the database read-write")
					if err := s.Stop(); err != nil {
						logger.Warn("jitd: stopping the read-only server", "error", err)
					}
					s, err = Start(ctx, sc)
					if errors.Is(err, kv.ErrDiskFull) {
						s, err = startWhenSpace(ctx, sc, logger, err)
					}
					if err != nil {
						return err
					}
				case <-ctx.Done():
					logger.Info("jitd: shutting down")
					return s.Stop()
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML configuration file (keys: data_dir, listen, policy, metrics_listen, log_json, max_ttl_cap, ca_passphrase_file, workload_socket, entries, webhooks, disk_reserve_mib, policy_settle, limits, expiring_lead)")
	f.StringVar(&fc.DataDir, "data-dir", "", "data directory made by jitd init")
	f.StringVar(&fc.Listen, "listen", "127.0.0.1:8443", "issuer API address (mTLS)")
	f.StringVar(&fc.Policy, "policy", "", "policy file (default <data-dir>/policy.yaml)")
	f.StringVar(&fc.MetricsListen, "metrics-listen", "127.0.0.1:9090", "address of /metrics, /healthz, /readyz (empty: off)")
	f.BoolVar(&fc.LogJSON, "log-json", false, "log JSON instead of text")
	f.DurationVar(&fc.MaxTTLCap, "max-ttl-cap", 0, "raise the global cap on grant TTLs (default 1h, at most 24h)")
	f.StringVar(&fc.CAPassphraseFile, "ca-passphrase-file", "", "file holding the CA key's passphrase")
	f.Int64Var(&fc.DiskReserveMiB, "disk-reserve-mib", 0, "free space (MiB) the database's file system must keep for writes to be accepted (default: 2x memtable + 2x value log + flushes + 16, at least 64)")
	f.StringVar(&fc.WorkloadSocket, "workload-socket", "", "serve the SPIFFE Workload API on this Unix socket (registration entries come from --config)")
	f.DurationVar(&fc.ExpiringLead, "expiring-lead", issuer.DefaultExpiringLead, "how long before a grant's end its expiring notice (webhook event expiring) is sent; 0: none")
	f.DurationVar(&fc.PolicySettle, "policy-settle", policy.DefaultSettle, "how long a changed policy file must stay unchanged before it is applied (a file with a matching checksum line applies at once)")
	return cmd
}

// diskWait is how often jitd serve tries again to open a database it had no
// disk space to open.
const diskWait = 5 * time.Second

// startWhenSpace retries Start every diskWait while it fails for lack of
// disk space, logging why once.
func startWhenSpace(ctx context.Context, sc ServeConfig, logger *slog.Logger, err error) (*Server, error) {
	logger.Error("jitd: cannot open the database: waiting for disk space", "error", err)
	t := time.NewTicker(diskWait)
	defer t.Stop()
	for errors.Is(err, kv.ErrDiskFull) {
		select {
		case <-ctx.Done():
			return nil, err
		case <-t.C:
		}
		var s *Server
		if s, err = Start(ctx, sc); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// mergeConfigFile reads the YAML file strictly and fills in every setting
// whose flag was not given.
func mergeConfigFile(cmd *cobra.Command, path string, fc *fileConfig) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("jitd: --config: %w", err)
	}
	defer f.Close()
	if b, err := io.ReadAll(f); err == nil && hasAnyKey(b, metaKeys...) {
		return fmt.Errorf("jitd: --config %s is a data directory's own jitd.yaml (jitd init wrote it: trust_domain, created, "+
			"ca_key_type), not a serve configuration: give serve settings in another file, such as serve.yaml, and leave this one as it is", path)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("jitd: --config %s: %w", path, err)
	}
	var fromFile fileConfig
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&fromFile); err != nil && err != io.EOF {
		return fmt.Errorf("jitd: --config %s: %w", path, err)
	}
	// An empty metrics_listen in the file turns the endpoint off, as an
	// empty --metrics-listen does.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("jitd: --config %s: %w", path, err)
	}
	var keys map[string]any
	if err := yaml.NewDecoder(f).Decode(&keys); err == nil {
		if v, ok := keys["metrics_listen"]; ok && (v == nil || v == "") && !cmd.Flags().Changed("metrics-listen") {
			fc.MetricsListen = ""
		}
	}
	set := func(flag string, dst *string, v string) {
		if !cmd.Flags().Changed(flag) && v != "" {
			*dst = v
		}
	}
	set("data-dir", &fc.DataDir, fromFile.DataDir)
	set("listen", &fc.Listen, fromFile.Listen)
	set("policy", &fc.Policy, fromFile.Policy)
	set("metrics-listen", &fc.MetricsListen, fromFile.MetricsListen)
	set("ca-passphrase-file", &fc.CAPassphraseFile, fromFile.CAPassphraseFile)
	set("workload-socket", &fc.WorkloadSocket, fromFile.WorkloadSocket)
	fc.Entries = fromFile.Entries
	fc.Webhooks = fromFile.Webhooks
	fc.TicketCheckers, fc.OnCall = fromFile.TicketCheckers, fromFile.OnCall
	fc.Limits = fromFile.Limits
	if !cmd.Flags().Changed("policy-settle") && fromFile.PolicySettle != 0 {
		fc.PolicySettle = fromFile.PolicySettle
	}
	// A 0 in the file turns the notice off, as --expiring-lead 0 does.
	if _, ok := keys["expiring_lead"]; ok && !cmd.Flags().Changed("expiring-lead") {
		fc.ExpiringLead = fromFile.ExpiringLead
	}
	if !cmd.Flags().Changed("log-json") && fromFile.LogJSON {
		fc.LogJSON = true
	}
	if !cmd.Flags().Changed("max-ttl-cap") && fromFile.MaxTTLCap != 0 {
		fc.MaxTTLCap = fromFile.MaxTTLCap
	}
	return nil
}

// Main runs the jitd command line and returns the process exit status: 0
// success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := NewCommand(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "jitd: ") {
			msg = "jitd: " + msg
		}
		fmt.Fprintln(stderr, msg)
	}
	return cli.ExitStatus(err)
}
