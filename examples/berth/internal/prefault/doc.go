// Package prefault makes a short-lived program start sooner where a page
// fault is dear. On this project's VM a fault costs about 13 µs, and a
// berth command takes some 600 of them before it is done; asking the kernel
// to fill a range in one madvise(MADV_POPULATE_WRITE) costs about 0.6 µs a
// page. Imported for its side effect, before anything else, it fills the
// heap mapping the Go allocator is carving (up to 2 MiB past the first
// fresh span) and the binary's writable data segment: about 5 ms less for
// every berth command there.
//
// It imports no package with an initializer (it reaches the auxiliary
// vector and raw system calls through the runtime's and package syscall's
// published linknames), so the runtime initializes it among the very first
// packages, before the 150-odd others pay their faults. On a kernel before
// 5.14, which lacks MADV_POPULATE_WRITE, and on other architectures, it
// does nothing.
package prefault
