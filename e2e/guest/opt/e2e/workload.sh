#!/bin/sh
# The e2e guest's workload: things IMA measures under the e2e policy.
# Executed scripts are measured at exec (BPRM_CHECK); files root reads are
# measured at open (FILE_CHECK MAY_READ uid=0).
echo "workload: start"
/opt/e2e/hello.sh
cat /opt/e2e/data/config.txt
sha256sum /opt/e2e/data/blob.txt
wc -l /etc/e2e/motd
echo "workload: done"
