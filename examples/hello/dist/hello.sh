#!/bin/sh
echo "Hello from Gantry (version 1.0.1)"
