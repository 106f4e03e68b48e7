// Package bankv1 holds the generated code of the example service
// bank.v1.Ledger (ledger.proto), protected by jitgrant in examples/ledger.
//
// Regenerate with `go generate ./examples/ledger/proto/...` after installing
// protoc (Debian's protobuf-compiler) and the two plugins at the pinned
// versions:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package bankv1

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative ledger.proto
