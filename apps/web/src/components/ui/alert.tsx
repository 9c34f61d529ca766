import { cva, type VariantProps } from 'class-variance-authority';
import { AlertTriangleIcon, CircleAlertIcon, InfoIcon, CircleCheckIcon } from 'lucide-react';
import type { ComponentProps, ReactNode } from 'react';
import { cn } from '../../lib/client/utils';

const alertVariants = cva(
  'relative grid w-full grid-cols-[auto_1fr] items-start gap-x-3 gap-y-0.5 rounded-lg border px-4 py-3 text-sm [&>svg]:size-4 [&>svg]:translate-y-0.5',
  {
    variants: {
      variant: {
        default: 'bg-card text-card-foreground',
        info: 'border-primary/30 bg-primary/5 [&>svg]:text-primary',
        success: 'border-success/40 bg-success/8 [&>svg]:text-success',
        warning: 'border-warning/50 bg-warning/10 [&>svg]:text-warning',
        destructive: 'border-destructive/40 bg-destructive/8 text-foreground [&>svg]:text-destructive',
      },
    },
    defaultVariants: { variant: 'default' },
  },
);

const icons = {
  default: InfoIcon,
  info: InfoIcon,
  success: CircleCheckIcon,
  warning: AlertTriangleIcon,
  destructive: CircleAlertIcon,
};

export function Alert({
  className,
  variant,
  title,
  children,
  ...props
}: Omit<ComponentProps<'div'>, 'title'> & VariantProps<typeof alertVariants> & { title?: ReactNode }) {
  const Icon = icons[variant ?? 'default'];
  return (
    <div
      role={variant === 'destructive' ? 'alert' : 'status'}
      className={cn(alertVariants({ variant }), className)}
      {...props}
    >
      <Icon aria-hidden="true" />
      {title ? <div className="font-medium">{title}</div> : null}
      {children ? (
        <div className={cn('col-start-2 text-muted-foreground', !title && 'row-start-1')}>{children}</div>
      ) : null}
    </div>
  );
}
