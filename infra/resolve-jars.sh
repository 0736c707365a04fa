#!/usr/bin/env bash
# Resolve the JVM jars declared in infra/pom.xml into the cache folder, once.
#   usage: infra/resolve-jars.sh <cache dir> <pyspark jars dir>
# <cache>/spark: extra jars for Spark (Delta, Kafka connector, S3A). Jars whose artifact pyspark already
#   ships are removed, so Spark's own versions win and the classpath holds one copy of each library.
# <cache>/kafka: the classpath of the native Kafka broker.
# <cache>/s3proxy: the S3-compatible server of the tests (one self-contained jar).
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

# Resolve into a staging folder first: JVMs already running keep reading the jars in place.
staging=$(mktemp -d "$cache/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
folders=(spark-jars:spark kafka-broker:kafka s3proxy:s3proxy)
for profile in "${folders[@]}"; do
  echo "resolving ${profile%%:*} jars into $cache/${profile##*:} (Maven Central)" >&2
  mvn -B -q -Dstyle.color=never -s "$here/maven-settings.xml" -f "$here/pom.xml" -P "${profile%%:*}" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging/${profile##*:}"
done

declare -A shipped
for jar in "$pyspark_jars"/*.jar; do shipped[$(artifact "$jar")]=1; done
for jar in "$staging"/spark/*.jar; do
  if [[ -n ${shipped[$(artifact "$jar")]:-} ]]; then rm "$jar"; fi
done

# Move new jars in and drop the ones the pom no longer names; a jar's name holds its version, so a jar
# already in place is the same file and is left alone.
for profile in "${folders[@]}"; do
  dir=${profile##*:}
  compgen -G "$staging/$dir/*.jar" >/dev/null || { echo "no jars resolved into $cache/$dir" >&2; exit 1; }
  mkdir -p "$cache/$dir"
  for jar in "$cache/$dir"/*.jar; do
    [[ ! -f $jar || -f $staging/$dir/${jar##*/} ]] || rm "$jar"
  done
  for jar in "$staging/$dir"/*.jar; do
    [[ -f $cache/$dir/${jar##*/} ]] || mv "$jar" "$cache/$dir/"
  done
done
echo "$want" > "$stamp"
echo "jars ready: $(ls "$cache/spark" | wc -l) for Spark, $(ls "$cache/kafka" | wc -l) for the broker," \
  "$(ls "$cache/s3proxy" | wc -l) for s3proxy" >&2
