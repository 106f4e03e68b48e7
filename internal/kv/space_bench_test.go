package kv

import "testing"

// BenchmarkCheckWrite measures the check run before every write
// transaction: a statfs and a stat of the directory when no file was
// created since the last check.
func BenchmarkCheckWrite(b *testing.B) {
	db, err := Open(b.TempDir(), Config{GCInterval: -1, DiskReserve: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.CheckWrite(); err != nil {
			b.Fatal(err)
		}
	}
}
