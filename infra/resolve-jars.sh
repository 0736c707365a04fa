#!/usr/bin/env bash
# Resolve the JVM jars declared in infra/pom.xml into the cache folder, once.
#   usage: infra/resolve-jars.sh <cache dir> <pyspark jars dir>
# <cache>/spark: extra jars for Spark (Delta, Kafka connector, S3A). Jars whose artifact pyspark already
#   ships are removed, so Spark's own versions win and the classpath holds one copy of each library.
# <cache>/kafka: the classpath of the native Kafka broker.
# A marker file holding the pom's hash makes a second run a no-op until the pom changes.
set -euo pipefail
mkdir -p "$1"
cache=$(cd "$1" && pwd)
pyspark_jars=$2
here=$(cd "$(dirname "$0")" && pwd)
stamp="$cache/.pom.sha256"
want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi

artifact() { basename "$1" .jar | sed -E 's/-[0-9][^-]*(-[0-9A-Za-z.]+)*$//'; }

rm -rf "$cache/spark" "$cache/kafka"
for profile in spark-jars:spark kafka-broker:kafka; do
  echo "resolving ${profile%%:*} jars into $cache/${profile##*:} (Maven Central)" >&2
  mvn -B -q -Dstyle.color=never -s "$here/maven-settings.xml" -f "$here/pom.xml" -P "${profile%%:*}" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache/${profile##*:}"
done

declare -A shipped
for jar in "$pyspark_jars"/*.jar; do shipped[$(artifact "$jar")]=1; done
for jar in "$cache"/spark/*.jar; do
  if [[ -n ${shipped[$(artifact "$jar")]:-} ]]; then rm "$jar"; fi
done
for dir in spark kafka; do
  compgen -G "$cache/$dir/*.jar" >/dev/null || { echo "no jars resolved into $cache/$dir" >&2; exit 1; }
done
echo "$want" > "$stamp"
echo "jars ready: $(ls "$cache/spark" | wc -l) for Spark, $(ls "$cache/kafka" | wc -l) for the broker" >&2
