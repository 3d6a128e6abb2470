// Package prefault makes a short-lived program start sooner where a page
// fault is dear. On this project's VM a fault costs about 13 µs, and a
// berth command took some 600 of them before it was done. Imported for its
// side effect, before anything else, it
//
//   - asks for transparent huge pages on the heap mapping the Go allocator
//     is carving, and collapses the 2 MiB block it is filling into one huge
//     page (MADV_HUGEPAGE, MADV_COLLAPSE): the heap then takes a fault per
//     2 MiB instead of one per 4 KiB. Where the kernel will not (THP off,
//     Linux before 6.1), it fills the heap mapping up to 2 MiB past a fresh
//     span with one madvise(MADV_POPULATE_WRITE) instead (about 4 MiB, at
//     0.6-2 µs a page);
//   - fills the binary's writable data segment the same way: those pages
//     are copied on write, often after a read fault mapped them first.
//
// Measured as medians of interleaved runs on the VM, against the same CLI
// without the package: berth --help 20.8 -> 15.9 ms, a fully cached build
// 26.4 -> 21.4 ms. The package's own work takes 1-2.5 ms of that. The
// code and read-only data are left alone: they are mapped from the page
// cache 16 pages per fault, and filling all 16 MB of them cost as much as
// the faults it saved.
//
// It does nothing in the processes berth re-executes to wait in the
// background (argv[0] berth-monitor or berth-linger), which would keep the
// memory for their whole life, on kernels with other than 4 KiB pages, and
// on architectures other than amd64 and arm64.
//
// It imports no package with an initializer (it reaches the auxiliary
// vector and raw system calls through the runtime's and package syscall's
// published linknames), so the runtime initializes it among the very first
// packages, before the 150-odd others pay their faults.
package prefault
