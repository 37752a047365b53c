#!/bin/sh
# Runs the app and writes a JUnit report on stdout; exits 1 when a test fails.
app="$1"
out=$("$app")
failures=0
case "$out" in *"Hello from Gantry"*) greet="" ;; *) greet='<failure message="no greeting"/>'; failures=1 ;; esac
case "$out" in *"version 1.0."*) ver="" ;; *) ver='<failure message="no version"/>'; failures=$((failures + 1)) ;; esac
cat <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="hello" tests="2" failures="$failures">
  <testcase classname="hello" name="greets">$greet</testcase>
  <testcase classname="hello" name="prints_version">$ver</testcase>
</testsuite>
XML
[ "$failures" -eq 0 ]
