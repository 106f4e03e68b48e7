package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// refCreateCertificate is what a bare x509.CreateCertificate with an ECDSA
// P-256 key cost on the benchmark machine when the cycle target (2,500/s)
// was set (issue 4): the yardstick for how fast the machine is today.
const refCreateCertificate = 130 * time.Microsecond

// calibrate returns the median time of n bare x509.CreateCertificate calls
// with an ECDSA P-256 key (Go signs, then verifies the signature), run one
// at a time. This shared VM's speed drifts through the day by more than any
// change measured here; printed beside cycles/s it tells a slow machine
// from slow code.
func calibrate(n int) (time.Duration, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, fmt.Errorf("calibrate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now, NotAfter: now.Add(time.Hour)}
	times := make([]time.Duration, n)
	for i := range times {
		start := time.Now()
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key); err != nil {
			return 0, fmt.Errorf("calibrate: %w", err)
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[n/2], nil
}
