// Package attest identifies the local processes that call jitd's SPIFFE
// Workload API on its Unix socket, and maps them to SPIFFE IDs through
// registration entries.
//
// # Flow
//
//  1. The gRPC server listens on the Unix socket with [Credentials]. When a
//     process connects, the handshake asks the kernel who it is
//     (SO_PEERCRED: PID, effective UID and GID at connect time) and reads the
//     process start time from /proc/<pid>/stat. Handlers get the result, a
//     [PeerInfo], from [PeerFromContext].
//  2. [Attestor.Attest] turns a PeerInfo into [Selectors]: unix:uid,
//     unix:gid, unix:user and unix:group (when the IDs have names),
//     unix:path (the target of /proc/<pid>/exe) and unix:sha256 (the hash
//     of the executable, read through /proc/<pid>/exe so the bytes are those
//     of the image the process runs; hashes are cached by device, inode,
//     size, mtime and ctime).
//  3. [Entries.Match] returns the registration entries whose selectors are
//     all among the caller's, in configuration order; the first is the
//     caller's default identity. No match means no identity: the Workload
//     API answers PermissionDenied.
//
// Registration entries come from jitd's configuration as [EntryConfig]
// values, checked by [ParseEntries]; [Diff] lists what changed between two
// configurations so that every change can be audited.
//
// # The PID-reuse guard
//
// A PID names a process only while that process lives: once it exits, the
// kernel may give the PID to a new process, and /proc/<pid> then describes
// the newcomer. Without a guard, a caller could connect, exit, and have its
// PID taken by a process it wants to impersonate before attestation reads
// /proc. The guard is the process start time, which with the PID names one
// process:
//
//  1. The handshake records the start time next to SO_PEERCRED's PID. Where
//     the kernel offers a pidfd for the peer (SO_PEERPIDFD, Linux 6.5+), it
//     then checks through the pidfd that the process that connected is
//     still alive, which proves the start time read is its own. On older
//     kernels, a PID reused between connect and handshake goes unnoticed.
//  2. Attest opens /proc/<pid> once and reads everything through that
//     handle (files under it fail once the process has gone, even if the
//     PID is reused), and compares the start time with the handshake's
//     before and after reading: a different start time is [ErrPIDReused], a
//     vanished process [ErrProcessGone].
//  3. [Attestor.Alive] repeats the check; a server calls it just before
//     sending a response, as SPIRE's peer tracker does, so that a caller
//     that exited meanwhile gets nothing.
//
// # What it does not protect against
//
//   - A process that calls execve after attestation keeps its PID and start
//     time: identities issued for the old executable stay with the new one
//     (on open streams, until the server attests again). SPIRE attests the
//     caller afresh on every request; the Workload API server should do so
//     for every new stream and every message it pushes.
//   - Passing the connected socket to another process: SO_PEERCRED names
//     the process that connected, not the one now holding the socket.
//   - Anything the caller's user can do to the caller: ptrace, code
//     injection, LD_PRELOAD, rewriting an executable it owns. Selectors
//     describe a process as the kernel sees it, not the code it runs now.
//   - unix:uid and unix:gid are the IDs at connect time; a process that
//     changes IDs later keeps the identity it got.
//   - unix:path names a file, not its contents: pair it with unix:sha256 or
//     make sure only trusted users can write the file and its directories.
//     A deleted executable's path ends in " (deleted)".
//   - Callers in other PID namespaces whose PID is not visible to jitd are
//     refused; jitd must see the same /proc as the PIDs it gets.
//
// Reading another user's /proc/<pid>/exe needs privilege (root, or
// CAP_SYS_PTRACE), so a jitd without it can attest only its own user's
// processes; attestation of others fails and they get no identity.
package attest
