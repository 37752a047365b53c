"""The peer for benches/match.rs: LocalStack's EventBridge pattern engine on the same rules and events.

Usage: python localstack_peer.py WORKLOAD.json SECONDS

WORKLOAD.json holds {"rules": [pattern, ...], "events": [event, ...], "sizes": [N, ...]}.
For each N, the first N rules are compiled once (as LocalStack does when a rule
is put), then events are matched against all N, one rule after the other, as
LocalStack's engine has no multi-rule index. Events are passed as parsed dicts,
as the Rust side passes parsed JSON. Prints one JSON line per N:
{"rules": N, "events": K, "seconds": T, "rate": R, "matched": M}, where T is
this thread's CPU time, R events per CPU second, and M is the number of
(event, rule) matches over the first K events, for the caller to compare.
"""

import json
import sys
import time

from localstack.services.events.event_rule_engine import EventPatternCompiler, EventRuleEngine


def main() -> None:
    workload_path, budget = sys.argv[1], float(sys.argv[2])
    with open(workload_path) as f:
        workload = json.load(f)
    compiler, engine = EventPatternCompiler(), EventRuleEngine()
    events = workload["events"]
    for size in workload["sizes"]:
        rules = [compiler.compile_event_pattern(p) for p in workload["rules"][:size]]
        done, matched = 0, 0
        start, cpu_start = time.perf_counter(), time.thread_time()
        while True:
            event = events[done % len(events)]
            hits = sum(1 for rule in rules if engine.evaluate_pattern_on_event(rule, event))
            if done < len(events):
                matched += hits
            done += 1
            if time.perf_counter() - start >= budget or done == 100 * len(events):
                break
        # CPU time of this thread, as the Rust side measures: the machine may be shared.
        cpu = time.thread_time() - cpu_start
        print(json.dumps({"rules": size, "events": min(done, len(events)),
                          "seconds": cpu, "rate": done / cpu, "matched": matched}),
              flush=True)


if __name__ == "__main__":
    main()
