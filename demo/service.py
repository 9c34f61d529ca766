"""Pyreach demo service: a small order processor worth poking at with Pyreach.

- Every few orders fail with an ERROR whose cause is only visible at DEBUG level (the `demo` logger runs
  at INFO): switch `demo.orders` to DEBUG with the `logging.set_level` script and the context appears.
- `demo.pricing.price_for` is a functools.lru_cache: inspect or clear it with the cache scripts
  (path `__main__.price_for` when run as a script, `demo_service.price_for` when imported).
- Several threads (two order workers, a cache refresher, the main loop): dump them with `threads.dump_stacks`.

Runs until SIGTERM/SIGINT. Standard library only; Python 3.14+.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import random
import signal
import sys
import threading
import time

LOG_FORMAT = "%(asctime)s %(levelname)-5s %(threadName)s %(name)s: %(message)s"
logging.basicConfig(level=logging.DEBUG, format=LOG_FORMAT, stream=sys.stdout, force=True)
# Handlers pass everything; the loggers decide. That is how most services are set up, and it is why a
# level change on the logger is all it takes to see DEBUG lines.
logging.getLogger("demo").setLevel(logging.INFO)
log = logging.getLogger("demo.orders")
pricing_log = logging.getLogger("demo.pricing")

SKUS = [f"SKU-{n:03d}" for n in range(1, 41)]
COUPONS = {"WELCOME10": 0.10, "SPRING5": 0.05, "LEGACY": 1.20}  # LEGACY is the bug: a 120 % discount
stop = threading.Event()
orders: queue.Queue[dict] = queue.Queue(maxsize=100)
stats = {"processed": 0, "failed": 0}
stats_lock = threading.Lock()


@functools.lru_cache(maxsize=128)
def price_for(sku: str) -> float:
    """Pretend-expensive price lookup, cached."""
    time.sleep(0.01)
    base = 5 + (int(sku[-3:]) * 7) % 90
    pricing_log.debug("priced %s at %.2f (cache miss)", sku, base)
    return float(base)


def process(order: dict) -> float:
    subtotal = sum(price_for(sku) * qty for sku, qty in order["items"])
    discount = COUPONS.get(order.get("coupon") or "", 0.0)
    total = round(subtotal * (1 - discount), 2)
    log.debug(
        "order %s: customer=%s items=%d subtotal=%.2f coupon=%s discount=%.0f%% total=%.2f",
        order["id"], order["customer"], len(order["items"]), subtotal, order.get("coupon"), discount * 100, total,
    )
    if total < 0:
        raise ValueError("negative total")
    return total


def worker() -> None:
    while not stop.is_set():
        try:
            order = orders.get(timeout=0.2)
        except queue.Empty:
            continue
        try:
            total = process(order)
            with stats_lock:
                stats["processed"] += 1
            log.info("order %s charged %.2f", order["id"], total)
        except Exception:
            with stats_lock:
                stats["failed"] += 1
            # The error line alone does not say why; the DEBUG line just before it does.
            log.error("order %s failed; payment not taken", order["id"])


def producer() -> None:
    rng = random.Random(os.getpid())
    n = 0
    while not stop.is_set():
        n += 1
        items = [(rng.choice(SKUS), rng.randint(1, 3)) for _ in range(rng.randint(1, 4))]
        coupon = rng.choice([None, None, "WELCOME10", "SPRING5", "LEGACY"])
        try:
            orders.put({"id": n, "customer": f"cust-{rng.randint(1, 50)}", "items": items, "coupon": coupon}, timeout=0.5)
        except queue.Full:
            pass
        stop.wait(0.25)


def cache_refresher() -> None:
    while not stop.wait(30):
        info = price_for.cache_info()
        logging.getLogger("demo.cache").info("price cache: %d entries, %d hits, %d misses", info.currsize, info.hits, info.misses)


def main() -> int:
    def _stop(signum, _frame):
        logging.getLogger("demo").info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = [
        threading.Thread(target=worker, name="order-worker-1", daemon=True),
        threading.Thread(target=worker, name="order-worker-2", daemon=True),
        threading.Thread(target=producer, name="order-producer", daemon=True),
        threading.Thread(target=cache_refresher, name="cache-refresher", daemon=True),
    ]
    for t in threads:
        t.start()
    logging.getLogger("demo").info("demo service started: pid %d, Python %s", os.getpid(), sys.version.split()[0])
    # The main thread keeps executing bytecode (a short wait in a loop), so it reaches safe points often.
    while not stop.wait(0.2):
        pass
    with stats_lock:
        logging.getLogger("demo").info("stopped: %d processed, %d failed", stats["processed"], stats["failed"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
