package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/issuer/attest"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

type config struct {
	clients     int
	duration    time.Duration
	warmup      time.Duration
	scenario    string
	async       bool
	csr         string // cycle: csrPresigned, csrInCycle or csrReused
	verifiers   int
	revocations int
	grants      int
	procs       int // GOMAXPROCS in effect, for the report
}

const benchPolicy = `version: 1
max_ttl: 1h
groups:
  ops: {members: ["spiffe://bench.test/person/ops"]}
permissions:
  revoke_any: [ops]
  watch_revocations: ["spiffe://bench.test/service/*"]
rules:
  - name: push
    requesters: ["spiffe://bench.test/workload/bench"]
    scopes:
      - method: /bench.v1.Target/*
    max_ttl: 10m
    approvals:
      - {count: 1, from: [ops]}
  - name: bench
    requesters: ["spiffe://bench.test/bench/*"]
    scopes:
      - method: /bench.v1.Target/*
    max_ttl: 10m
    approvals:
      - {count: 1, from: [ops]}
    auto_approve: 'ttl <= duration("5m")'
`

// run sets up a temporary jitd with clients, then measures the scenario.
func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.clients < 1 {
		return errors.New("--clients must be at least 1")
	}
	switch cfg.csr {
	case csrPresigned, csrInCycle, csrReused:
	default:
		return fmt.Errorf("--csr %q: want %s, %s or %s", cfg.csr, csrPresigned, csrInCycle, csrReused)
	}
	var ids []string
	switch cfg.scenario {
	case "cycle":
		for i := range cfg.clients {
			ids = append(ids, fmt.Sprintf("spiffe://bench.test/bench/c%d", i))
		}
	case "revoke":
		ids = []string{"spiffe://bench.test/bench/c0", "spiffe://bench.test/person/ops", "spiffe://bench.test/service/ledger"}
	case "push":
		ids = []string{"spiffe://bench.test/person/ops"}
	default:
		return fmt.Errorf("unknown --scenario %q (want cycle, revoke or push)", cfg.scenario)
	}
	dir, err := os.MkdirTemp("", "jitbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := jitd.DataDir(filepath.Join(dir, "data"))
	if err := jitd.Init(jitd.InitConfig{Dir: data, TrustDomain: "bench.test"}); err != nil {
		return err
	}
	if err := os.WriteFile(data.Policy(), []byte(benchPolicy), 0o644); err != nil {
		return err
	}
	clients := make([]*client, len(ids))
	for i, id := range ids {
		idDir := filepath.Join(dir, fmt.Sprintf("client-%d", i))
		if _, err := jitd.Enroll(ctx, jitd.EnrollConfig{Dir: data, ID: id, TTL: time.Hour, Out: idDir}); err != nil {
			return err
		}
		clients[i] = &client{id: spiffeid.RequireFromString(id), dir: idDir}
	}
	serve := jitd.ServeConfig{
		Dir: data, Listen: "127.0.0.1:0", AsyncWrites: cfg.async,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if cfg.scenario == "push" {
		serve.WorkloadSocket = filepath.Join(dir, "workload.sock")
		serve.Entries = []attest.EntryConfig{{ID: "spiffe://bench.test/workload/bench", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}
	}
	srv, err := jitd.Start(ctx, serve)
	if err != nil {
		return err
	}
	defer srv.Stop()
	for _, c := range clients {
		if err := c.dial(srv.Addr()); err != nil {
			return err
		}
		defer c.cc.Close()
		if cfg.csr == csrReused {
			if c.csr, err = c.csrs.make(); err != nil {
				return err
			}
		}
	}
	if cfg.scenario == "cycle" && cfg.csr == csrPresigned {
		if err := presign(clients, cfg); err != nil {
			return err
		}
	}
	switch cfg.scenario {
	case "revoke":
		return measureRevoke(ctx, cfg, clients[0], clients[1], clients[2], out)
	case "push":
		return measurePush(ctx, cfg, srv, clients[0], out)
	}
	before, err := calibrate(calibrations)
	if err != nil {
		return err
	}
	if err := measure(ctx, cfg, clients, out); err != nil {
		return err
	}
	after, err := calibrate(calibrations)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "machine: bare x509.CreateCertificate (P-256) %s before, %s after (%s when the target was set)\n",
		before.Round(time.Microsecond), after.Round(time.Microsecond), refCreateCertificate)
	return nil
}

// calibrations is how many certificates calibrate signs: about 50 ms.
const calibrations = 400

type client struct {
	id   spiffeid.ID
	dir  string
	cc   *grpc.ClientConn
	api  pb.IssuerClient
	csrs *csrMaker // new CSRs for the client's one key
	csr  []byte    // set: every request sends this CSR (-reuse-csr)
}

func (c *client) dial(addr string) error {
	svid, err := x509svid.Load(filepath.Join(c.dir, jitd.EnrollCert), filepath.Join(c.dir, jitd.EnrollKey))
	if err != nil {
		return err
	}
	bundle, err := x509bundle.Load(c.id.TrustDomain(), filepath.Join(c.dir, jitd.EnrollBundle))
	if err != nil {
		return err
	}
	creds := verifier.ClientCredentials(svid, bundle, tlsconfig.AuthorizeID(jitd.ServerID(c.id.TrustDomain())))
	if c.cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(creds)); err != nil {
		return err
	}
	c.api = pb.NewIssuerClient(c.cc)
	// One key per client, as a person's CLI may keep one; a new CSR for
	// every request.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.csrs, err = newCSRMaker(key, c.id.URL())
	return err
}

// The -csr modes of the cycle scenario. Each client keeps one P-256 key.
const (
	// csrPresigned: a new CSR for every request, signed before the run so
	// that the load generator's signatures do not take the two cores from
	// the issuer, whose work per request is the same in every mode.
	csrPresigned = "presigned"
	// csrInCycle: a new CSR for every request, signed inside the cycle.
	csrInCycle = "in-cycle"
	// csrReused: one CSR per client, sent in every request.
	csrReused = "reused"
)

// presignRate is the cycle rate presign provides CSRs for: above any rate
// measured on the 2-CPU benchmark machine. Past it, clients sign in the
// cycle, and the report says how often.
const presignRate = 4000

// presign gives every client the CSRs it will send during the warm-up and
// the measured window, all clients signing at once.
func presign(clients []*client, cfg config) error {
	window := (cfg.warmup + cfg.duration).Seconds()
	per := int(presignRate*window)/len(clients) + 1
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.csrs.presign(per) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cycle is one CreateRequest -> ISSUED -> FetchGrant.
func (c *client) cycle(ctx context.Context) error {
	csr := c.csr
	if csr == nil {
		var err error
		// A presigned CSR, or (none presigned or none left) a new one.
		if csr, err = c.csrs.next(); err != nil {
			return err
		}
	}
	res, err := c.api.CreateRequest(ctx, &pb.CreateRequestRequest{
		Scopes: []*pb.Scope{{Method: "/bench.v1.Target/Call"}}, Ttl: durationpb.New(5 * time.Minute),
		Reason: "bench", Csr: csr,
	})
	if err != nil {
		return err
	}
	if st := res.GetRequest().GetState(); st != pb.State_STATE_ISSUED {
		return fmt.Errorf("request %s is %v, want ISSUED", res.GetRequest().GetId(), st)
	}
	f, err := c.api.FetchGrant(ctx, &pb.FetchGrantRequest{Id: res.GetRequest().GetId()})
	if err != nil {
		return err
	}
	if len(f.GetCertChain()) == 0 {
		return errors.New("FetchGrant returned no certificate")
	}
	return nil
}

// measure runs every client in a loop: a warm-up, then the measured window.
func measure(ctx context.Context, cfg config, clients []*client, out io.Writer) error {
	var measuring atomic.Bool
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr atomic.Pointer[error]
	// The window lasts cfg.duration and, on a machine too busy to finish a
	// cycle in that time, until the first measured cycle completes.
	var counted sync.Once
	measured := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				start := time.Now()
				if err := c.cycle(ctx); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
						cancel()
					}
					break
				}
				if measuring.Load() {
					mine = append(mine, time.Since(start))
					counted.Do(func() { close(measured) })
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(cfg.warmup)
	measuring.Store(true)
	start, cpuStart := time.Now(), cpuTime()
	time.Sleep(cfg.duration)
	select {
	case <-measured:
	case <-ctx.Done():
	}
	measuring.Store(false)
	elapsed, cpu := time.Since(start), cpuTime()-cpuStart
	cancel()
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	if len(lat) == 0 {
		return errors.New("no cycle completed")
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	signed := 0
	for _, c := range clients {
		signed += c.csrs.signed
	}
	fmt.Fprintf(out, "scenario=cycle clients=%d durable=%v csr=%s gomaxprocs=%d cycles=%d elapsed=%.1fs\n", cfg.clients, !cfg.async,
		cfg.csr, cfg.procs, len(lat), elapsed.Seconds())
	if cfg.csr == csrPresigned && signed > 0 {
		fmt.Fprintf(out, "presigned CSRs ran out: %d signed in the cycle\n", signed)
	}
	fmt.Fprintf(out, "cycles/s=%.0f p50=%s p99=%s max=%s\n", float64(len(lat))/elapsed.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	// CPU time per cycle (server and clients together, user and system)
	// moves far less than cycles/s when other work shares the machine.
	fmt.Fprintf(out, "cpu/cycle=%s cpu-use=%.2f cores\n", (cpu / time.Duration(len(lat))).Round(time.Microsecond), cpu.Seconds()/elapsed.Seconds())
	return nil
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
