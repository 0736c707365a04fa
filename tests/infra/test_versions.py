"""The JVM pins in infra/pom.xml agree with the Python lock and with the jars pyspark ships."""

from pathlib import Path

import pyspark
import pytest

from lakehouse.versions import locked as _locked
from lakehouse.versions import pom_property as _pom


def test_spark_version_matches_the_installed_pyspark():
    assert _pom("spark.version") == _locked("pyspark") == pyspark.__version__


def test_delta_jar_matches_the_python_package_and_the_spark_minor():
    assert _pom("delta.version") == _locked("delta-spark")
    assert _pom("delta.spark.suffix") == ".".join(pyspark.__version__.split(".")[:2])


def test_hadoop_aws_matches_the_hadoop_client_pyspark_ships():
    shipped = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")]
    assert shipped == [f"hadoop-client-api-{_pom('hadoop.version')}.jar"]


def test_resolved_spark_jars_hold_one_copy_of_each_library(settings):
    resolved = {p.name for p in (settings.jars_dir / "spark").glob("*.jar")}
    assert f"delta-spark_{_pom('delta.spark.suffix')}_2.13-{_pom('delta.version')}.jar" in resolved
    assert f"spark-sql-kafka-0-10_2.13-{_pom('spark.version')}.jar" in resolved
    assert f"hadoop-aws-{_pom('hadoop.version')}.jar" in resolved
    # hadoop-aws 3.4 talks to S3 through the AWS SDK v2 bundle, which pyspark does not ship.
    assert f"bundle-{_pom('aws.sdk.v2.version')}.jar" in resolved
    shipped = {p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    duplicated_by_mistake = ("scala-library", "jackson-core", "hadoop-client-api")
    assert not any(name.startswith(duplicated_by_mistake) for name in resolved)
    assert resolved & shipped == set()


def test_s3proxy_is_resolved_as_one_self_contained_jar(settings):
    assert [p.name for p in (settings.jars_dir / "s3proxy").glob("*.jar")] == [
        f"s3proxy-{_pom('s3proxy.version')}-jar-with-dependencies.jar"]


def test_unknown_pins_are_named_in_the_error():
    with pytest.raises(KeyError, match="not pinned in requirements.lock"):
        _locked("no-such-package")
    with pytest.raises(KeyError, match="no <nope.version> in infra/pom.xml"):
        _pom("nope.version")
