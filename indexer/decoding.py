"""Audio files into model windows: decoded inline, by threads or by worker processes, behind one generator.

`decoded(paths, sample_rate, spec, workers=N, processes=P, ahead=M)` yields `(i, item)`, where `item` is a
`Window` of `paths[i]` or, last, that file's `FileEnd` (header info, window count, or why it failed). One
file's items arrive in order; files interleave. At most `ahead` decoded items wait for the model, so
decoders stay a few batches ahead of it and memory stays flat on hour-long files.

Why three ways:
- **inline** (`workers=0`): nothing runs beside the model.
- **threads**: libsndfile and the resampler's GEMM release the GIL. Beside a model on a 2-core CPU, two
  threads reach 92-100 % of the bare encoder's throughput (benchmarks/bench_index.py).
- **processes**: a GPU embeds hundreds of 10-second windows a second, thousands of seconds of audio to
  decode and resample, more than threads sharing one GIL keep up with. Each worker has a pipe of its own
  (no lock shared between processes, so one that dies cannot wedge another); the parent hands files out
  one at a time as workers finish them, and a reader thread drains the pipes into the bounded queue so
  workers keep decoding while the model runs. A worker that dies (killed, out of memory) fails the run
  with its exit code instead of hanging it.

A file that cannot be decoded is not an error of the run: its `FileEnd` carries the reason, whatever
was raised (a library's RuntimeError, MemoryError or UnicodeError on odd bytes included: decoding is
where untrusted bytes meet C libraries, and one file must not end a run over thousands). Only a
decoder process that dies, or an error outside decoding (the pipe, the queue), fails the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from indexer import objectstore
from indexer.audio import AudioInfo, probe, stream_audio
from indexer.errors import AudioDecodeError
from indexer.fsnames import display
from indexer.metadata import EmbeddedText, read_embedded_text
from indexer.windows import Window, WindowSpec, iter_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEnd:
    """A decoder's last word on a file: its header info and window count, or why it failed."""

    info: AudioInfo | None
    n_windows: int
    error: str | None
    embedded: EmbeddedText


Item = Window | FileEnd


def decode_file(path: str, sample_rate: int, spec: WindowSpec) -> Iterator[Item]:
    """A file's (or an object-storage URL's) windows, then its `FileEnd`."""
    if objectstore.is_url(path):
        yield from _decode_object(path, sample_rate, spec)
        return
    n = 0
    try:
        info = probe(path)
        for window in iter_windows(stream_audio(path, sample_rate), sample_rate, spec):
            yield window
            n += 1
        yield FileEnd(info, n, None, read_embedded_text(path))
    except AudioDecodeError as exc:
        yield FileEnd(None, n, exc.reason, EmbeddedText())
    except OSError as exc:
        yield FileEnd(None, n, f"cannot read file: {exc.strerror or exc}", EmbeddedText())
    except Exception as exc:  # a bug (ours or a library's) that this file's bytes trip: see the module doc
        log.warning("decoding %s failed unexpectedly", display(path), exc_info=True)
        yield FileEnd(None, n, f"decoding failed unexpectedly ({type(exc).__name__}: {exc})", EmbeddedText())


def _decode_object(url: str, sample_rate: int, spec: WindowSpec) -> Iterator[Item]:
    try:
        with objectstore.local_copy(url) as local:
            yield from decode_file(local, sample_rate, spec)
    except OSError as exc:  # only the download can raise here: decode_file reports its own failures
        yield FileEnd(None, 0, f"cannot read object: {exc.strerror or exc}", EmbeddedText())


class DecoderDied(RuntimeError):
    """A decoder process ended without finishing its files."""


_DONE = object()


def decoded(
    paths: Sequence[str],
    sample_rate: int,
    spec: WindowSpec,
    *,
    workers: int,
    processes: bool = False,
    ahead: int = 32,
) -> Iterator[tuple[int, Item]]:
    """Every file's windows and `FileEnd`, tagged with the file's position in `paths` (see module doc)."""
    if workers <= 0 or not paths:
        for i, path in enumerate(paths):
            for item in decode_file(path, sample_rate, spec):
                yield i, item
        return
    run = _Run(paths, sample_rate, spec, queue.Queue(maxsize=max(1, ahead)), threading.Event())
    n = min(workers, len(paths))
    pool = _ProcessPool(run, n) if processes else _ThreadPool(run, n)
    running = pool.start()
    try:
        while running:
            item = run.out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        run.stop.set()  # the run ended or failed: decoders waiting to hand over give up
        pool.close()


@dataclass(frozen=True)
class _Run:
    """What every decoder of one run shares: the files, how to cut them, and the queue to the model."""

    paths: Sequence[str]
    sample_rate: int
    spec: WindowSpec
    out: queue.Queue[Any]
    stop: threading.Event

    def put(self, item: Any) -> bool:
        """Hand `item` to the model's side; False once the run has stopped."""
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class _ThreadPool:
    def __init__(self, run: _Run, n: int) -> None:
        self.run = run
        self.pending: queue.Queue[tuple[int, str]] = queue.Queue()
        for job in enumerate(run.paths):
            self.pending.put(job)
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"decode-{k}") for k in range(n)]

    def start(self) -> int:
        for t in self.threads:
            t.start()
        return len(self.threads)

    def _work(self) -> None:
        run = self.run
        try:
            while not run.stop.is_set():
                try:
                    i, path = self.pending.get_nowait()
                except queue.Empty:
                    return
                for item in decode_file(path, run.sample_rate, run.spec):
                    if not run.put((i, item)):
                        return
        except BaseException as exc:  # anything decode_file does not turn into a per-file error
            run.put(exc)
        finally:
            run.put(_DONE)

    def close(self) -> None:
        for t in self.threads:
            t.join(timeout=5)


def _process_main(conn: Connection, sample_rate: int, spec: WindowSpec) -> None:
    """A decoder process: files in, (i, item) out, over its own pipe; None ends it."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism
    with threadpool_limits(1):
        try:
            while (job := conn.recv()) is not None:
                i, path = job
                for item in decode_file(path, sample_rate, spec):
                    conn.send((i, item))
        except (EOFError, OSError):
            return  # the parent is gone or closed the pipe: nothing left to report to


# Files given to a worker before it finishes one: the next is ready the moment the previous ends.
_FILES_IN_HAND = 2


class _ProcessPool:
    def __init__(self, run: _Run, n: int) -> None:
        self.run = run
        self.next_file = 0
        # spawn, not fork: the parent holds torch's thread pools (and on a GPU, a CUDA context).
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.child_ends: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for k in range(n):
            parent, child = ctx.Pipe(duplex=True)
            self.conns.append(parent)
            self.child_ends.append(child)
            self.procs.append(
                ctx.Process(
                    target=_process_main,
                    args=(child, run.sample_rate, run.spec),
                    daemon=True,
                    name=f"soundsearch-decode-{k}",
                )
            )
        self.in_hand: list[list[int]] = [[] for _ in range(n)]
        self.reader = threading.Thread(target=self._read, daemon=True, name="decode-reader")

    def start(self) -> int:
        for proc in self.procs:
            proc.start()
        for child in self.child_ends:
            child.close()  # the parent keeps no write end: a dead worker's pipe reads as closed
        for k in range(len(self.procs)):
            for _ in range(_FILES_IN_HAND):
                self._give(k)
        self.reader.start()
        return 1  # the reader thread is the one producer

    def _give(self, k: int) -> None:
        paths = self.run.paths
        if self.next_file < len(paths):
            i = self.next_file
            self.next_file += 1
            self.in_hand[k].append(i)
            self.conns[k].send((i, paths[i]))
        elif not self.in_hand[k]:
            self.conns[k].send(None)

    def _read(self) -> None:
        live = set(range(len(self.procs)))
        try:
            while live and not self.run.stop.is_set():
                by_conn = {self.conns[k]: k for k in live}
                for ready in wait(list(by_conn), timeout=0.5):
                    k = by_conn[ready]  # type: ignore[index]
                    try:
                        i, item = self.conns[k].recv()
                    except (EOFError, OSError):
                        live.discard(k)
                        if self.in_hand[k]:
                            self.procs[k].join(timeout=5)
                            raise DecoderDied(
                                f"decoder process {self.procs[k].pid} died (exit code {self.procs[k].exitcode}) "
                                f"while decoding {self.run.paths[self.in_hand[k][0]]}"
                            ) from None
                        continue
                    if isinstance(item, BaseException):
                        raise item
                    if not self.run.put((i, item)):
                        return
                    if isinstance(item, FileEnd):
                        self.in_hand[k].remove(i)
                        self._give(k)
        except BaseException as exc:
            self.run.put(exc)
        finally:
            self.run.put(_DONE)

    def close(self) -> None:
        self.reader.join(timeout=5)
        for proc in self.procs:
            if proc.is_alive():  # only after a failure or an abandoned run: finished workers have exited
                proc.terminate()
            proc.join(timeout=5)
        for conn in self.conns:
            conn.close()
