"""A worker function that reports the Lambda environment it runs in."""

import os


def lambda_handler(event, context):
    return {
        "region": os.environ["AWS_REGION"],
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
    }
