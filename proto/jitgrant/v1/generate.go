// Package jitgrantv1 holds the generated code of the jitgrant issuer API,
// service jitgrant.v1.Issuer (issuer.proto).
//
// Regenerate with `go generate ./proto/...` after installing protoc (Debian's
// protobuf-compiler) and the two plugins at the pinned versions:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package jitgrantv1

//go:generate protoc -I . -I /usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative issuer.proto
